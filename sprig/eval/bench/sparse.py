"""The sparse-engine benchmark: every system, one run, the same vectors.

Systems: sprig exact and approximate (sprig/index/sparse.py), pyserini LuceneImpactSearcher,
pyseismic-lsr, bmp and scipy brute force. Corpora: the real SPLADE-tiny vectors of scifact +
nfcorpus + squad-a; a synthetic corpus of the same size (does the generator reproduce each peer's
recall-speed behaviour?); and the synthetic corpus at ``--scale`` x 1,000,000 documents
(sprig/eval/bench/synthetic.py). Each system runs in its own process (sprig/eval/bench/worker.py, pinned to one
core), so its build time, index bytes and peak memory are its own; with ``--cores 0,1`` two workers
run at once, one per core. Recall@10 is measured against scipy's exact float32 top-10.

Worker results are cached by (sha256 of the vectors file, system, build and search knobs, k, warm-up,
adapter + worker source hashes); ``--reuse`` takes a cached result instead of running the worker again
(e.g. re-running only sprig after an engine change while the peers' results stay).

    python -m sprig.eval.bench.sparse --scale 0.1        # or: sprig bench sparse --scale 0.1
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sprig.eval.bench.synthetic import FULL_SIZE
from sprig.eval.bench.vectors import (
    REAL_DATASETS,
    VectorSet,
    real_vectors,
    with_integers,
)

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[3]
GROUND_TRUTH = "scipy"


@dataclass
class System:
    """How to run one system: its adapter module, which interpreter, its knobs and its limits."""

    module: str
    peers: bool  # runs in the peers virtualenv
    build: dict = field(default_factory=dict)
    settings: list[dict] = field(default_factory=lambda: [{}])
    max_docs: int = 0  # above this corpus size the system is not run ...
    skip_reason: str = ""  # ... for this reason


def seismic_postings(n_docs: int) -> int:
    """Seismic's n_postings grows with the corpus: 400 at scifact size (PEERS.md: recall 0.998), 1,000 at
    100k, 6,000 from 600k (PEERS.md's setting at 1M)."""
    return int(np.clip(round(0.01 * n_docs), 400, 6000))


def systems(n_docs: int) -> dict[str, System]:
    return {
        "scipy": System("scipy_brute", peers=False),
        "sprig": System("sprig_engine", peers=False, settings=[{"mode": "exact"}] + [
            {"mode": "approx", "query_mass": mass, "rescore": r} for mass, r in ((0.9, 100), (0.8, 100), (0.7, 200), (0.8, 50), (0.6, 200))]),
        "lucene": System("lucene", peers=True),
        "seismic": System("seismic", peers=True, build={"n_postings": seismic_postings(n_docs)}, settings=[
            {"query_cut": cut, "heap_factor": hf} for cut in (5, 10, 20) for hf in (0.7, 0.9)]),
        # PEERS.md: BMP needed 18.8 GB of RAM to build 1M documents; this machine allows ~8 GiB per process.
        "bmp": System("bmp", peers=True, build={"doc_scale": 40.0, "block": 32}, settings=[{"alpha": a} for a in (1.0, 0.9, 0.8)],
                      max_docs=300_000, skip_reason="memory: 18.8 GB to build 1M docs (PEERS.md), limit ~8 GiB per process"),
    }


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def result_key(name: str, spec: System, vectors_sha: str, args) -> str:
    """What a worker's result depends on: the vectors, the system and its knobs, and the code that ran it."""
    code = [REPO / "sprig" / "eval" / "bench" / "peers" / f"{spec.module}.py", REPO / "sprig" / "eval" / "bench" / "worker.py"]
    if name == "sprig":  # the engine itself
        code += [REPO / "sprig" / "index" / "sparse_format.py", REPO / "sprig" / "kernels" / "sparse_search.py", REPO / "sprig" / "index" / "sparse.py"]
    parts = [vectors_sha, name, json.dumps(spec.build, sort_keys=True), json.dumps(spec.settings, sort_keys=True), str(args.k),
             str(args.warmup)] + [hashlib.sha256(p.read_bytes()).hexdigest() for p in code if p.is_file()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def run_system(name: str, spec: System, vectors: Path, vectors_sha: str, n_docs: int, work: Path, core: str, args) -> dict:
    """One worker process (or its cached result under --reuse); its JSON result, or {"not_run": reason}."""
    if spec.max_docs and n_docs > spec.max_docs:
        return {"not_run": spec.skip_reason}
    cached = args.cache / "results" / f"{name}-{result_key(name, spec, vectors_sha, args)}.json"
    if args.reuse and cached.is_file():
        log.info("%s: reusing %s", name, cached)
        return json.loads(cached.read_text()) | {"reused": True}
    python = str(args.peers_python) if spec.peers else sys.executable
    if spec.peers and not Path(python).is_file():
        return {"not_run": f"no peers virtualenv at {python}: run sprig/eval/bench/peers_setup.sh"}
    work.mkdir(parents=True, exist_ok=True)
    out, workdir = work / f"{name}.json", work / name
    shutil.rmtree(workdir, ignore_errors=True)
    cmd = [python, "-m", "sprig.eval.bench.worker", "--system", spec.module, "--vectors", str(vectors), "--workdir", str(workdir),
           "--out", str(out), "--k", str(args.k), "--build", json.dumps(spec.build), "--settings", json.dumps(spec.settings),
           "--warmup", str(args.warmup)]
    if core and shutil.which("taskset"):
        cmd = ["taskset", "-c", core] + cmd
    # One thread everywhere: numba, BLAS, Rayon (Seismic, BMP).
    env = os.environ | {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "RAYON_NUM_THREADS")}
    log.info("%s: %s", name, shlex.join(cmd))
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"not_run": f"timeout after {args.timeout} s"}
    (work / f"{name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"not_run": f"exit {proc.returncode}: {tail[0][:200]}"}
    result = json.loads(out.read_text()) | {"core": core, "worker_wall_s": time.time() - t0}
    shutil.rmtree(workdir, ignore_errors=True)  # indexes are measured; free the disk
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(result))
    log.info("%s: done in %.0f s", name, time.time() - t0)
    return result


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found ∩ truth| / |truth| (truth rows padded with -1 are shorter)."""
    total = 0.0
    for f, t in zip(found, truth):
        t = t[t >= 0]
        total += len(set(f[f >= 0].tolist()) & set(t.tolist())) / max(len(t), 1)
    return total / len(truth)


def score_runs(results: dict[str, dict]) -> None:
    """Add recall@k vs the ground truth to every run, and drop the raw top-k lists."""
    truth = np.asarray(results[GROUND_TRUTH]["runs"][0]["top"]) if "runs" in results.get(GROUND_TRUTH, {}) else None
    tops = {}
    for name, res in results.items():
        for run in res.get("runs", []):
            top = np.asarray(run.pop("top"))
            run["recall"] = recall_at_k(top, truth) if truth is not None else float("nan")
            tops[(name, json.dumps(run["knobs"]))] = top
    exact, lucene = tops.get(("sprig", json.dumps({"mode": "exact"}))), tops.get(("lucene", "{}"))
    if exact is not None and lucene is not None:
        same = np.mean([set(a.tolist()) == set(b.tolist()) for a, b in zip(exact, lucene)])
        results["sprig"]["same_top_as_lucene"] = float(same)


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    mem = next((int(line.split()[1]) // 1024**2 for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")), 0)
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": mem, "python": platform.python_version(), "os": platform.platform(),
            "load_avg_start": os.getloadavg()}


def real_sizes(args) -> dict[str, int]:
    """Documents per real dataset, as cached (a cache may hold a corpus prefix: see the report)."""
    return {name: int(np.load(args.cache / f"real-{name}.npz")["doc_indptr"].size - 1) for name in args.datasets.split(",")}


def synthetic_path(cache: Path, n_docs: int, args) -> Path:
    """Where a generated corpus is kept between runs (the generator is deterministic given these)."""
    return cache / f"synthetic-{n_docs}-q{args.queries}-k{args.topics}-s{args.seed}.npz"


def prepare_corpora(args, work: Path) -> dict[str, tuple[Path, dict]]:
    """Write the VectorSets this run uses, with sprig's integer view for Lucene; return {corpus: (path, description)}.

    A synthetic corpus is generated once and kept (``synthetic_path``); the topic model is fit once and
    cached too (synthetic.cached_fit)."""
    from sprig.eval.bench import synthetic

    real = real_vectors(args.cache, tuple(args.datasets.split(",")), index_root=args.real_index)
    real_q = real.sample_queries(args.queries, args.seed)
    corpora: dict[str, tuple[Path, dict]] = {}
    if args.corpus in ("real", "all"):
        path = work / "real.npz"
        with_integers(real_q).save(path)
        corpora["real"] = (path, {"docs": real.docs.shape[0], "queries": real_q.queries.shape[0], "datasets": real_sizes(args)})
    if args.corpus in ("synthetic", "all"):
        model, fit_s = synthetic.cached_fit(real, args.cache, args.topics, args.seed)
        sizes = {"synthetic-small": real.docs.shape[0], "synthetic": round(FULL_SIZE * args.scale)}
        for name, n in sizes.items():
            if name == "synthetic" and args.skip_large:
                continue
            kept = synthetic_path(args.cache, n, args)
            t0 = time.time()
            if kept.is_file():
                synth, generate_s = VectorSet.load(kept), None
            else:
                synth = synthetic.generate(model, n, args.queries, args.seed)
                generate_s = time.time() - t0
                synth.save(kept)
            desc = {"docs": n, "queries": args.queries, "fit_s": fit_s, "generate_s": generate_s, "kept": str(kept),
                    "beta_docs": model.docs.beta, "beta_queries": model.queries.beta,
                    "fidelity": synthetic.compare(real.docs, synth.docs[: real.docs.shape[0]])}
            if name == "synthetic-small":
                desc["fidelity_independent"] = synthetic.compare(real.docs, synthetic.independent(real, real.docs.shape[0], 1, args.seed).docs)
            path = work / f"{name}.npz"
            with_integers(synth).save(path)
            corpora[name] = (path, desc)
            del synth
    return corpora


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sprig.eval.bench.sparse", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.command = "python -m sprig.eval.bench.sparse " + shlex.join(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by `python -m sprig.eval.bench.sparse` and `sprig bench sparse`."""
    parser.add_argument("--corpus", choices=["real", "synthetic", "all"], default="all",
                        help="real vectors, synthetic (same size as real, and --scale x 1M), or all (default)")
    parser.add_argument("--datasets", default=",".join(REAL_DATASETS), help="real corpora (BEIR folders under shared/data) to stack")
    parser.add_argument("--scale", type=float, default=1.0, help=f"synthetic corpus size = scale x {FULL_SIZE:,} documents")
    parser.add_argument("--queries", type=int, default=1000, help="queries per corpus (a seeded sample of the real test queries)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--topics", type=int, default=64, help="NMF topics of the synthetic generator")
    parser.add_argument("--systems", default="scipy,sprig,lucene,seismic,bmp", help="comma-separated subset (scipy is always run: it is the ground truth)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=200, help="untimed queries before each setting")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per system and corpus")
    parser.add_argument("--cores", default="0", help="comma-separated CPUs: one worker at a time pinned to each ('' = one worker, no pinning)")
    parser.add_argument("--reuse", action="store_true", help="take cached worker results for identical vectors, system, knobs and code")
    parser.add_argument("--skip-large", action="store_true", help="leave out the --scale x 1M synthetic corpus")
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "bench", help="real-vector caches and scratch")
    parser.add_argument("--real-index", type=Path, default=None, help="folder of sprig indexes <dataset>/docs.sqlite to take real vectors from")
    parser.add_argument("--peers-python", type=Path, default=REPO / ".cache" / "peers-venv" / "bin" / "python")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks", help="folder for sparse.json, sparse.md, sparse.png")


def jobs_in_order(corpora: dict[str, tuple[Path, dict]], wanted: list[str]) -> list[tuple[str, str]]:
    """(corpus, system) pairs, the largest corpora first and, within one, the slowest peers first, so
    two cores finish close together."""
    slow = {"lucene": 0, "seismic": 1, "bmp": 2, "sprig": 3, GROUND_TRUTH: 4}
    by_size = sorted(corpora, key=lambda c: -corpora[c][1]["docs"])
    return [(c, s) for c in by_size for s in sorted(wanted, key=lambda s: slow.get(s, 5))]


def run(args) -> int:
    from queue import Queue

    from sprig.eval.bench.sparse_report import write_report

    work = args.cache / f"run-scale{args.scale:g}"
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    info = {"command": args.command, "machine": machine(), "scale": args.scale, "seed": args.seed, "k": args.k, "corpora": {}}
    wanted = [GROUND_TRUTH] + [s for s in args.systems.split(",") if s and s != GROUND_TRUTH]
    corpora = prepare_corpora(args, work)
    specs, shas, results = {}, {}, {c: {} for c in corpora}
    for corpus, (path, desc) in corpora.items():
        specs[corpus] = systems(desc["docs"])
        unknown = sorted(set(wanted) - set(specs[corpus]))
        if unknown:
            raise SystemExit(f"unknown systems {unknown}; choose from {', '.join(specs[corpus])}")
        shas[corpus] = file_sha256(path)
        desc["vectors_sha256"] = shas[corpus]
    cores: Queue = Queue()
    for core in args.cores.split(",") if args.cores else [""]:
        cores.put(core)

    lock = threading.Lock()

    def job(corpus: str, name: str) -> None:
        core = cores.get()
        try:
            path, desc = corpora[corpus]
            result = run_system(name, specs[corpus][name], path, shas[corpus], desc["docs"], work / corpus, core, args)
        finally:
            cores.put(core)
        with lock:
            results[corpus][name] = result
            if len(results[corpus]) == len(wanted):  # the corpus is complete: score it, report what is done so far
                score_runs(results[corpus])
                info["corpora"][corpus] = desc | {"results": {s: results[corpus][s] for s in wanted}}
                path.unlink(missing_ok=True)
                write_report(info, args.out)

    with ThreadPoolExecutor(max_workers=cores.qsize()) as pool:
        for future in [pool.submit(job, c, s) for c, s in jobs_in_order(corpora, wanted)]:
            future.result()
    info["corpora"] = {c: info["corpora"][c] for c in corpora}  # report order: as prepared
    info["machine"]["load_avg_end"] = os.getloadavg()
    info["wall_s"] = time.time() - started
    write_report(info, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
