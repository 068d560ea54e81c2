"""Choose hybrid fusion settings on training/dev qrels, then report them on test — never tuned on test.

Input is run files (TREC format, one per retriever; `sprig eval beir --retriever X --split S` writes
them), so tuning never re-encodes a corpus. The grid covers both fusion methods, retriever weights on
the simplex (convex) or a coarser grid (RRF), and the candidate depth. The objective is the mean
nDCG@10 over the tuning sets, so one default serves every corpus (Bruch et al., TOIS 2023, find
convex weights transfer across BEIR sets).

    python -m sprig.eval.tune_fusion \
      --tune DATA/scifact train RUNS/scifact-train-{bm25,splade,dense}/run.trec \
      --tune DATA/nfcorpus dev RUNS/nfcorpus-dev-{bm25,splade,dense}/run.trec \
      --test DATA/scifact test RUNS/scifact-{bm25,splade,dense}/run.trec \
      --test DATA/nfcorpus test RUNS/nfcorpus-{bm25,splade,dense}/run.trec --out OUT.json

The grid search scores nDCG@10 with a vectorised trec_eval-equivalent formula for speed; the chosen
setting (and every reported number) is then recomputed with sprig.eval.metrics (ir_measures).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sprig.corpus.readers import read_qrels
from sprig.eval.metrics import evaluate
from sprig.eval.provenance import provenance
from sprig.eval.runs import Run, read_trec
from sprig.retriever.fusion import Run as RankedList
from sprig.retriever.fusion import DEFAULTS, fuse, minmax_contribution, rrf_contribution

NAMES = ("bm25", "splade", "dense")
DEPTHS = (100, 1000)


@dataclass
class Split:
    label: str
    qrels: dict[str, dict[str, int]]
    runs: dict[str, Run]


def _ranked(hits: dict[str, float], depth: int) -> list[tuple[str, float]]:
    return sorted(hits.items(), key=lambda kv: (-kv[1], kv[0]))[:depth]


def _weight_grid(method: str) -> np.ndarray:
    """Weights on the simplex (steps of 0.05 for convex, 0.1 for RRF); row 0 is equal weights, the untuned baseline."""
    step = 20 if method == "convex" else 10
    grid = [(a / step, b / step, (step - a - b) / step) for a in range(step + 1) for b in range(step + 1 - a)]
    return np.array([(1 / 3, 1 / 3, 1 / 3), *grid])


class Prepared:
    """Per query: the candidate union, the [candidates, retrievers] contribution matrix, gains and ideal DCG."""

    def __init__(self, split: Split, method: str, depth: int, rrf_k: float = DEFAULTS.rrf_k):
        contribution = minmax_contribution if method == "convex" else rrf_contribution
        self.items = []
        discount = 1 / np.log2(np.arange(2, 12))
        for qid, judged in split.qrels.items():
            rels = sorted((r for r in judged.values() if r > 0), reverse=True)
            if not rels:
                continue
            idcg = float(np.sum(np.array(rels[:10]) * discount[: min(10, len(rels))]))
            lists = {n: _ranked(split.runs[n].get(qid, {}), depth) for n in NAMES}
            cands = sorted({d for hits in lists.values() for d, _ in hits})
            if not cands:
                self.items.append(None)
                continue
            pos = {d: i for i, d in enumerate(cands)}
            matrix = np.zeros((len(cands), len(NAMES)))
            for j, n in enumerate(NAMES):
                if lists[n]:
                    scores = np.array([s for _, s in lists[n]])
                    matrix[[pos[d] for d, _ in lists[n]], j] = contribution(scores, np.arange(1, len(scores) + 1), rrf_k)
            gains = np.array([max(judged.get(d, 0), 0) for d in cands], dtype=np.float64)
            self.items.append((matrix, gains, idcg))

    def ndcg10(self, weights: np.ndarray) -> np.ndarray:
        """Mean nDCG@10 for each weight row of ``weights`` [n_w, 3] (ties broken by candidate order = doc id)."""
        discount = 1 / np.log2(np.arange(2, 12))
        total = np.zeros(len(weights))
        for item in self.items:
            if item is None:
                continue
            matrix, gains, idcg = item
            scores = matrix @ weights.T  # [cands, n_w]
            k = min(10, len(gains))
            order = np.argsort(-scores, axis=0, kind="stable")[:k]
            total += (gains[order] * discount[:k, None]).sum(0) / idcg
        return total / max(1, len(self.items))


def _load(spec: list[str]) -> Split:
    data, split, *paths = spec
    if len(paths) != len(NAMES):
        raise SystemExit(f"expected DATA SPLIT and {len(NAMES)} run files ({', '.join(NAMES)}), got {spec}")
    return Split(f"{Path(data).name}/{split}", read_qrels(data, split), {n: read_trec(p) for n, p in zip(NAMES, paths)})


def fused_run(split: Split, method: str, weights: dict[str, float], depth: int) -> Run:
    out: Run = {}
    for qid in split.qrels:
        runs = {}
        for n in NAMES:
            hits = _ranked(split.runs[n].get(qid, {}), depth)
            runs[n] = RankedList(np.array([d for d, _ in hits], dtype=object), np.array([s for _, s in hits], dtype=np.float64))
        fused = fuse(runs, method, weights, k=1000)
        out[qid] = {str(d): float(s) for d, s in zip(fused.ids, fused.scores)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sprig.eval.tune_fusion", description=__doc__.split("\n\n")[0])
    p.add_argument("--tune", nargs="+", action="append", required=True, metavar="DATA SPLIT RUNS", help="a tuning set: BEIR folder, qrels split, bm25/splade/dense run files")
    p.add_argument("--test", nargs="+", action="append", default=[], metavar="DATA SPLIT RUNS", help="a set to report the chosen setting on")
    p.add_argument("--out", required=True, help="JSON report")
    args = p.parse_args(argv)
    tune = [_load(s) for s in args.tune]
    results = []
    for method, depth in itertools.product(("convex", "rrf"), DEPTHS):
        grid = _weight_grid(method)
        per_set = np.stack([Prepared(s, method, depth).ndcg10(grid) for s in tune])  # [sets, n_w]
        mean = per_set.mean(0)
        for i in [0, *[int(j) for j in np.argsort(-mean[1:])[:5] + 1]]:
            results.append({"method": method, "depth": depth, "weights": dict(zip(NAMES, grid[i].round(3).tolist())),
                            "mean_nDCG@10": float(mean[i]), "per_set": dict(zip((s.label for s in tune), per_set[:, i].round(4).tolist())),
                            **({"note": "equal weights (baseline)"} if i == 0 else {})})
        print(f"{method} depth {depth}: best mean nDCG@10 {mean.max():.4f} at {dict(zip(NAMES, grid[int(mean.argmax())].round(3)))}", file=sys.stderr)
    best = max((r for r in results if "note" not in r), key=lambda r: r["mean_nDCG@10"])
    report = {"chosen": best, "tuning_sets": [s.label for s in tune], "leaderboard": sorted(results, key=lambda r: -r["mean_nDCG@10"])}
    report["chosen_exact"] = {s.label: evaluate(fused_run(s, best["method"], best["weights"], best["depth"]), s.qrels) for s in tune}
    report["test"] = {}
    for spec in args.test:
        s = _load(spec)
        report["test"][s.label] = {
            "hybrid (chosen)": evaluate(fused_run(s, best["method"], best["weights"], best["depth"]), s.qrels),
            **{n: evaluate(s.runs[n], s.qrels) for n in NAMES},
        }
    report["provenance"] = provenance()
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({"chosen": best, "test": {k: round(v["hybrid (chosen)"]["nDCG@10"], 4) for k, v in report["test"].items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
