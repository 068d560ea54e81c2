"""Synthetic SPLADE-like corpora that keep the topical structure of real vectors.

Why not sample terms independently: block-based engines (Seismic, Bruch et al. SIGIR 2024; BMP,
Mallia et al. SIGIR 2024) prune with per-block summaries that only work because documents about one
subject share terms. Independent draws by term frequency erase that: Seismic's recall@10 fell from
0.998 (real SPLADE vectors) to 0.66-0.77 at 1M documents (see shared/PEERS.md).

The generator, fit once on real document vectors:

1. Topics. Non-negative matrix factorisation X ~ W H of the real doc-term weight matrix
   (Lee & Seung 1999; sklearn coordinate descent) over the terms found in at least two documents.
   Row k of H, normalised, is topic k's term distribution, cut to the terms holding 99% of its mass.
2. Mixtures. A document's topic shares are W[d, k] * |H_k|_1, normalised; its "few topics" are the
   fewest that hold 80% of that mass (at most 8). Topic prevalence is the column sum of the shares.
3. Background. beta, the share of real weight mass on terms outside each document's own topics'
   supports, is drawn from the corpus-wide term distribution instead (documents' weight mass per term;
   the queries' own distribution for queries).

Sampling one document (one query the same way, from the real queries' templates and background):

a. Pick a real document uniformly as a template: it gives the length L (number of non-zero terms),
   the descending list of L weights, and the mixture's dominance profile (its top-m topic shares).
b. Pick m topics without replacement with probability proportional to prevalence (Gumbel top-m) and
   give them the template's top-m shares, renormalised.
c. Draw terms one at a time - from the background with probability beta, else from a topic chosen by
   the shares - skipping repeats, until L distinct terms are drawn (successive sampling). The i-th
   distinct term gets the template's i-th largest weight, so a document's heaviest weights land on its
   most probable, most topical terms, as in SPLADE.

Everything is drawn from one seeded numba generator on one thread, so a seed reproduces the corpus
byte for byte. `compare` reports the statistics (lengths, weights, term document frequency, and
pairwise term co-occurrence lift) that show how close a synthetic corpus is to the fit data.
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numba
import numpy as np
import scipy.sparse as sp

from sprig.core.files import atomic_path
from sprig.eval.bench.vectors import REAL_DATASETS, VectorSet, real_vectors

log = logging.getLogger(__name__)

TOPIC_MASS = 0.99  # each topic keeps the terms holding this share of its mass
MIXTURE_MASS = 0.8  # a document's "few topics" hold this share of its topic mass
MAX_TOPICS_PER_DOC = 8
FULL_SIZE = 1_000_000  # synthetic documents at --scale 1
FIT_ITERATIONS = 60  # coordinate-descent passes of the NMF fit
FIT_TOL = 1e-3


@dataclass
class Side:
    """What sampling needs for one side (documents or queries)."""

    lengths_indptr: np.ndarray  # int64 [n_templates + 1]: template i's weights are weights[indptr[i]:indptr[i+1]]
    weights: np.ndarray  # float32, each template's weights sorted descending
    shares: np.ndarray  # float64 [n_templates, MAX_TOPICS_PER_DOC]: top topic shares, zero-padded
    background_ids: np.ndarray  # int32
    background_cdf: np.ndarray  # float64
    beta: float  # share of draws taken from the background


@dataclass
class CooccurrenceModel:
    """A topic model of real SPLADE vectors plus the templates that fix lengths and weights."""

    dim: int
    topic_indptr: np.ndarray  # int64 [K + 1]
    topic_ids: np.ndarray  # int32 term ids of each topic, most probable first
    topic_cdf: np.ndarray  # float64 cumulative probabilities within each topic
    prevalence: np.ndarray  # float64 [K]
    docs: Side
    queries: Side


def _topic_shares(w: np.ndarray, h_mass: np.ndarray) -> np.ndarray:
    """Each row's share of its reconstructed mass per topic (uniform for rows the topics miss)."""
    mass = w * h_mass
    total = mass.sum(axis=1, keepdims=True)
    return np.where(total > 0, mass / np.where(total > 0, total, 1.0), 1.0 / mass.shape[1])


def _mixtures(w: np.ndarray, h_mass: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's fewest topics holding MIXTURE_MASS of its topic mass, largest first.

    Returns (topic ids [n, MAX_TOPICS_PER_DOC] padded with -1, shares of the same shape padded with 0).
    """
    shares = _topic_shares(w, h_mass)
    order = np.argsort(-shares, axis=1, kind="stable")[:, :MAX_TOPICS_PER_DOC]
    top = np.take_along_axis(shares, order, axis=1)
    keep = np.cumsum(top, axis=1) - top < MIXTURE_MASS  # topics still needed to reach the mass
    top = np.where(keep, top, 0.0)
    return np.where(keep, order, -1), top / top.sum(axis=1, keepdims=True)


def _uncovered_share(m: sp.csr_matrix, topics: np.ndarray, support: np.ndarray) -> float:
    """Share of m's weight mass on terms outside the supports of each row's own few topics: beta."""
    coo = m.tocoo()
    covered = np.zeros(coo.nnz, bool)
    for j in range(topics.shape[1]):
        t = topics[coo.row, j]
        covered |= (t >= 0) & support[np.maximum(t, 0), coo.col]
    return float(coo.data[~covered].sum() / coo.data.sum())


def _cdf(ids: np.ndarray, mass: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-mass, kind="stable")
    cdf = np.cumsum(mass[order], dtype=np.float64)
    return ids[order].astype(np.int32), cdf / cdf[-1]


def _templates(m: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the weights sorted descending (the length is the row's non-zero count)."""
    weights = np.concatenate([-np.sort(-m.data[a:b]) for a, b in zip(m.indptr[:-1], m.indptr[1:])]).astype(np.float32)
    return m.indptr.astype(np.int64), weights


def _side(m: sp.csr_matrix, w: np.ndarray, h_mass: np.ndarray, support: np.ndarray) -> Side:
    indptr, weights = _templates(m)
    col_mass = np.asarray(m.sum(axis=0)).ravel()
    nz = np.flatnonzero(col_mass > 0)
    bg_ids, bg_cdf = _cdf(nz, col_mass[nz])
    topics, shares = _mixtures(w, h_mass)
    return Side(indptr, weights, shares, bg_ids, bg_cdf, _uncovered_share(m, topics, support))


def fit(real: VectorSet, n_topics: int = 64, seed: int = 0, max_iter: int = FIT_ITERATIONS) -> CooccurrenceModel:
    """Fit topics on the real documents; queries reuse the topics, with their own mixtures and background.

    Coordinate descent stops at ``max_iter`` passes or when an iteration improves the objective by
    less than FIT_TOL of the first one (sklearn's criterion)."""
    from sklearn.decomposition import NMF

    docs = real.docs.tocsr().astype(np.float64)
    active = np.flatnonzero(np.diff(docs.tocsc().indptr) >= 2)  # terms in >= 2 documents
    x = docs[:, active]
    nmf = NMF(n_components=n_topics, init="nndsvda", max_iter=max_iter, random_state=seed, tol=FIT_TOL)
    w = nmf.fit_transform(x)
    h = nmf.components_
    log.info("NMF: %d topics over %d terms, %d iterations, relative error %.4f", n_topics, active.size, nmf.n_iter_,
             nmf.reconstruction_err_ / sp.linalg.norm(x))
    h_mass = h.sum(axis=1)

    support = np.zeros((n_topics, real.dim), bool)
    topic_ids, topic_cdf, indptr = [], [], [0]
    for k in range(n_topics):
        ids, cdf = _cdf(active, h[k])
        cut = int(np.searchsorted(cdf, TOPIC_MASS)) + 1
        topic_ids.append(ids[:cut])
        topic_cdf.append(cdf[:cut] / cdf[cut - 1])
        indptr.append(indptr[-1] + cut)
        support[k, ids[:cut]] = True
    wq = nmf.transform(real.queries.tocsr().astype(np.float64)[:, active])
    return CooccurrenceModel(
        dim=real.dim,
        topic_indptr=np.asarray(indptr, np.int64),
        topic_ids=np.concatenate(topic_ids),
        topic_cdf=np.concatenate(topic_cdf),
        prevalence=_topic_shares(w, h_mass).sum(axis=0),
        docs=_side(real.docs, w, h_mass, support),
        queries=_side(real.queries, wq, h_mass, support),
    )


def save_model(model: CooccurrenceModel, path: Path) -> None:
    """Write the fitted model as one .npz (aside, then renamed), so a run fits once per real corpus."""
    arrays = {k: v for k, v in asdict(model).items() if k not in ("docs", "queries")}
    for side in ("docs", "queries"):
        arrays |= {f"{side}.{k}": v for k, v in asdict(getattr(model, side)).items()}
    with atomic_path(path, ".npz") as tmp:
        np.savez(tmp, **arrays)


def load_model(path: Path) -> CooccurrenceModel:
    z = np.load(path)

    def side(name: str) -> Side:
        return Side(**{f.name: (float(z[f"{name}.{f.name}"]) if f.name == "beta" else z[f"{name}.{f.name}"]) for f in fields(Side)})

    top = {f.name: z[f.name] for f in fields(CooccurrenceModel) if f.name not in ("docs", "queries")}
    return CooccurrenceModel(**(top | {"dim": int(top["dim"]), "docs": side("docs"), "queries": side("queries")}))


def cached_fit(real: VectorSet, cache: Path, n_topics: int, seed: int) -> tuple[CooccurrenceModel, float | None]:
    """fit(), cached under ``cache`` by the real vectors' shape and the fit's knobs; (model, fit seconds or None if reused)."""
    import time

    path = cache / f"synthetic-model-{real.docs.shape[0]}x{real.docs.nnz}-q{real.queries.shape[0]}-k{n_topics}-s{seed}-i{FIT_ITERATIONS}.npz"
    if path.is_file():
        return load_model(path), None
    t0 = time.time()
    model = fit(real, n_topics, seed)
    save_model(model, path)
    return model, time.time() - t0


@numba.njit(cache=True)
def _sample_rows(n, seed, dim, t_indptr, t_ids, t_cdf, log_prev, tl_indptr, tl_weights, shares, bg_ids, bg_cdf, beta):
    """n rows as CSR (indptr, term ids in draw order, weights); see the module docstring, steps a-c."""
    np.random.seed(seed)
    n_templates = tl_indptr.size - 1
    n_topics = log_prev.size
    template = np.empty(n, np.int64)
    indptr = np.zeros(n + 1, np.int64)
    for i in range(n):
        template[i] = np.random.randint(0, n_templates)
        indptr[i + 1] = indptr[i] + (tl_indptr[template[i] + 1] - tl_indptr[template[i]])
    ids = np.empty(indptr[n], np.int32)
    weights = np.empty(indptr[n], np.float32)
    stamp = np.full(dim, -1, np.int64)
    keys = np.empty(n_topics)
    topics = np.empty(shares.shape[1], np.int64)
    mix_cdf = np.empty(shares.shape[1])
    for i in range(n):
        j = template[i]
        length = indptr[i + 1] - indptr[i]
        # b. the template's top-m shares on m topics drawn by prevalence (Gumbel top-m, no replacement)
        m = 0
        while m < shares.shape[1] and shares[j, m] > 0:
            m += 1
        for k in range(n_topics):
            keys[k] = log_prev[k] - np.log(-np.log(np.random.random() + 1e-300) + 1e-300)
        order = np.argsort(-keys)
        acc = 0.0
        for r in range(m):
            topics[r] = order[r]
            acc += shares[j, r]
            mix_cdf[r] = acc
        # c. successive sampling of distinct terms
        got = 0
        tries = 0
        while got < length:
            tries += 1
            if tries > 50 * length or np.random.random() < beta:
                t = bg_ids[np.searchsorted(bg_cdf, np.random.random() * bg_cdf[-1])]
            else:
                r = np.searchsorted(mix_cdf[:m], np.random.random() * mix_cdf[m - 1])
                k = topics[min(r, m - 1)]
                a, b = t_indptr[k], t_indptr[k + 1]
                t = t_ids[a + min(np.searchsorted(t_cdf[a:b], np.random.random()), b - a - 1)]
            if stamp[t] == i:
                continue
            stamp[t] = i
            ids[indptr[i] + got] = t
            weights[indptr[i] + got] = tl_weights[tl_indptr[j] + got]
            got += 1
    return indptr, ids, weights


def _sample(model: CooccurrenceModel, side: Side, n: int, seed: int) -> sp.csr_matrix:
    lengths = np.diff(side.lengths_indptr)
    if lengths.max(initial=0) > side.background_ids.size:
        raise ValueError(f"a template has {lengths.max()} terms but the background only {side.background_ids.size}")
    indptr, ids, weights = _sample_rows(
        n, seed, model.dim, model.topic_indptr, model.topic_ids, model.topic_cdf, np.log(np.maximum(model.prevalence, 1e-300)),
        side.lengths_indptr, side.weights, side.shares, side.background_ids, side.background_cdf, side.beta,
    )
    m = sp.csr_matrix((weights, ids, indptr), shape=(n, model.dim))
    m.sort_indices()
    return m


def generate(model: CooccurrenceModel, n_docs: int, n_queries: int, seed: int) -> VectorSet:
    """n_docs documents and n_queries queries; documents and queries use independent streams of one seed."""
    docs = _sample(model, model.docs, n_docs, seed)
    queries = _sample(model, model.queries, n_queries, seed + 1_000_003)
    return VectorSet(docs, queries)


def independent(real: VectorSet, n_docs: int, n_queries: int, seed: int) -> VectorSet:
    """The baseline this module replaces: real lengths and weights, terms drawn independently by their
    document frequency. Kept only to show, in `compare`, what co-occurrence it loses."""
    rng = np.random.default_rng(seed)

    def rows(m: sp.csr_matrix, n: int) -> sp.csr_matrix:
        df = np.diff(m.tocsc().indptr).astype(np.float64)
        p = df / df.sum()
        src = rng.integers(0, m.shape[0], n)
        out = []
        for j in src:
            a, b = m.indptr[j], m.indptr[j + 1]
            terms = rng.choice(m.shape[1], b - a, replace=False, p=p)
            out.append(sp.csr_matrix((m.data[a:b], (np.zeros(b - a, int), terms)), shape=(1, m.shape[1])))
        res = sp.vstack(out, format="csr")
        res.sort_indices()
        return res

    return VectorSet(rows(real.docs, n_docs), rows(real.queries, n_queries))


def cooccurrence_lift(m: sp.csr_matrix, terms: np.ndarray) -> np.ndarray:
    """log P(a, b) / (P(a) P(b)) over documents, for the given terms (pairs never seen: nan)."""
    b = (m[:, terms] > 0).astype(np.float64)
    n = m.shape[0]
    joint = (b.T @ b).toarray() / n
    p = np.diag(joint).copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.log(joint / np.outer(p, p))
    lift[~np.isfinite(lift)] = np.nan
    np.fill_diagonal(lift, np.nan)
    return lift


def compare(real: sp.csr_matrix, synth: sp.csr_matrix, n_terms: int = 400, skip: int = 50) -> dict[str, float]:
    """How closely synth's statistics follow real's: lengths, weights, term df, co-occurrence lift.

    Co-occurrence is compared on real's n_terms most frequent terms after the `skip` near-ubiquitous
    ones: the Pearson correlation of the pairwise log-lift, and the mean absolute log-lift (about 0 when
    terms are drawn independently).
    """
    q = [0.1, 0.5, 0.9]
    lr, ls = np.diff(real.indptr), np.diff(synth.indptr)
    df_r = np.diff(real.tocsc().indptr) / real.shape[0]
    df_s = np.diff(synth.tocsc().indptr) / synth.shape[0]
    top = np.argsort(-df_r, kind="stable")[skip : skip + n_terms]
    lift_r, lift_s = cooccurrence_lift(real, top), cooccurrence_lift(synth, top)
    both = np.isfinite(lift_r) & np.isfinite(lift_s)
    seen = (df_r > 0) | (df_s > 0)
    out = {
        "length_mean_real": float(lr.mean()), "length_mean_synth": float(ls.mean()),
        **{f"length_p{int(x * 100)}_real": float(np.quantile(lr, x)) for x in q},
        **{f"length_p{int(x * 100)}_synth": float(np.quantile(ls, x)) for x in q},
        **{f"weight_p{int(x * 100)}_real": float(np.quantile(real.data, x)) for x in q},
        **{f"weight_p{int(x * 100)}_synth": float(np.quantile(synth.data, x)) for x in q},
        "df_log_corr": float(np.corrcoef(np.log(df_r[seen] + 1e-6), np.log(df_s[seen] + 1e-6))[0, 1]),
        "lift_corr": float(np.corrcoef(lift_r[both], lift_s[both])[0, 1]) if both.sum() > 2 else float("nan"),
        "lift_abs_mean_real": float(np.nanmean(np.abs(lift_r))),
        "lift_abs_mean_synth": float(np.nanmean(np.abs(lift_s))),
    }
    return out


def main(argv: list[str] | None = None) -> int:
    """Fit on the real vectors and write a synthetic VectorSet (the benchmark does this itself)."""
    parser = argparse.ArgumentParser(prog="python -m sprig.eval.bench.synthetic", description=main.__doc__)
    parser.add_argument("--real", type=Path, default=Path(".cache/bench"), help="folder of real-<dataset>.npz caches")
    parser.add_argument("--out", type=Path, required=True, help="output .npz")
    parser.add_argument("--scale", type=float, default=1.0, help=f"documents = scale x {FULL_SIZE:,}")
    parser.add_argument("--datasets", default=",".join(REAL_DATASETS), help="real corpora to fit on")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--topics", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    real = real_vectors(args.real, tuple(args.datasets.split(",")))
    model, _ = cached_fit(real, args.real, args.topics, args.seed)
    synth = generate(model, round(FULL_SIZE * args.scale), args.queries, args.seed)
    synth.save(args.out)
    print({k: round(v, 4) for k, v in compare(real.docs, synth.docs[: real.docs.shape[0]]).items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
