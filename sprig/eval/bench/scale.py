"""The measured part of docs/scale.md: sprig's native sparse engine against its Milvus backend on milvus-lite, on
the synthetic SPLADE-like corpus (sprig/eval/bench/synthetic.py) at growing sizes.

At each size three systems run, each in its own worker process pinned to one core (sprig.eval.bench.worker, as in
the sparse benchmark): scipy's exact float32 top-10 (the ground truth), sprig's engine (exact, and one approximate
setting) and milvus-lite through sprig's ``MilvusIndex`` (peers/milvus_lite.py). Each reports build seconds, index
bytes, QPS and p50 / p99 latency (wall and thread-CPU clocks) and recall@10 against scipy. A system whose worker
does not finish within ``--timeout`` (build and search; 30 minutes by default), or whose time or peak memory at the
last size projects past the timeout or what this machine has free, is recorded with the reason and not tried at
larger sizes. Results are written after every size, so a killed run keeps what it measured.

    python -m sprig.eval.bench.scale --sizes 10000,100000,1000000 --queries 500 --warmup 100 [--real-index DIR]

(--real-index: a folder holding scifact/docs.sqlite of a sprig index, whose SPLADE vectors the generator is fitted
on; without it they are encoded, or taken from the cache .cache/bench/real-scifact.npz.)
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path

from sprig.eval.bench import synthetic
from sprig.eval.bench.sparse import GROUND_TRUTH, REPO, System, file_sha256, machine, run_system, score_runs, synthetic_path
from sprig.eval.bench.vectors import real_vectors
from sprig.index.milvus import CONSISTENCY

log = logging.getLogger(__name__)
MEMORY_SHARE = 0.6  # a worker is not started when its projected peak memory is over this share of MemAvailable

SYSTEMS = {
    GROUND_TRUTH: System("scipy_brute", peers=False),
    "sprig": System("sprig_engine", peers=False, settings=[{"mode": "exact"}, {"mode": "approx", "query_mass": 0.9, "rescore": 100}]),
    "milvus-lite": System("milvus_lite", peers=False),
}


def corpus(n_docs: int, model: synthetic.CooccurrenceModel, args) -> Path:
    """The synthetic corpus of ``n_docs`` documents, generated once and kept in the cache (the workers read it there)."""
    kept = synthetic_path(args.cache, n_docs, args)
    if not kept.is_file():
        synthetic.generate(model, n_docs, args.queries, args.seed).save(kept)
    return kept


def available_mib() -> float:
    """MemAvailable (Linux /proc): what a worker may take without pushing other jobs on this machine into swap or OOM."""
    line = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemAvailable"))
    return int(line.split()[1]) / 1024


def too_big(result: dict, n_prev: int, n_docs: int, timeout_s: float) -> str | None:
    """Why a system should not be run at ``n_docs``, given its run at ``n_prev``: its worker's wall time or its peak
    memory (milvus-lite runs inside its worker, so its memory counts too), grown in proportion to the corpus, over
    the timeout or over MEMORY_SHARE of the memory available now."""
    grow = n_docs / n_prev
    if result["worker_wall_s"] * grow > timeout_s:
        return f"time: {result['worker_wall_s']:.0f} s at {n_prev:,} documents projects to {result['worker_wall_s'] * grow:.0f} s, over the {timeout_s:.0f} s timeout"
    projected, free = result["peak_rss_mib"] * grow, available_mib()
    if projected > MEMORY_SHARE * free:
        return (f"memory: {result['peak_rss_mib'] / 1024:.1f} GiB peak at {n_prev:,} documents projects to {projected / 1024:.0f} GiB, "
                f"over {MEMORY_SHARE:.0%} of the {free / 1024:.0f} GiB available")
    return None


def measure(args) -> dict:
    work = args.cache / "run-scale"
    work.mkdir(parents=True, exist_ok=True)
    info = {"command": args.command, "machine": machine(), "k": args.k, "queries": args.queries, "warmup": args.warmup, "seed": args.seed,
            "timeout_s": args.timeout, "milvus_consistency_level": CONSISTENCY, "sizes": {}}
    real = real_vectors(args.cache, tuple(args.datasets.split(",")), index_root=args.real_index)
    model, fit_s = synthetic.cached_fit(real, args.cache, args.topics, args.seed)
    info["fit"] = {"datasets": args.datasets, "real_docs": int(real.docs.shape[0]), "fit_s": fit_s}
    given_up: dict[str, str] = {}
    previous: dict[str, tuple[int, dict]] = {}  # system -> (size, result) of its last completed run
    for n_docs in sorted(args.sizes):
        t0 = time.time()
        path = corpus(n_docs, model, args)
        generate_s, sha = time.time() - t0, file_sha256(path)
        systems = {}
        for name in [GROUND_TRUTH] + [s for s in args.systems.split(",") if s != GROUND_TRUTH]:
            if name in given_up:
                systems[name] = {"not_run": f"not tried: {given_up[name]} at a smaller size"}
                continue
            reason = too_big(previous[name][1], previous[name][0], n_docs, args.timeout) if name in previous else None
            systems[name] = {"not_run": reason} if reason else run_system(name, SYSTEMS[name], path, sha, n_docs, work / str(n_docs), args.core, args)
            if "not_run" in systems[name]:
                given_up[name] = systems[name]["not_run"]
            else:
                previous[name] = (n_docs, systems[name])
        if "runs" in systems[GROUND_TRUTH]:
            score_runs(systems)
        info["sizes"][str(n_docs)] = {"generate_s": generate_s, "systems": systems}
        info["machine"]["load_avg_end"] = os.getloadavg()
        write_report(info, args.out)
    return info


def write_report(info: dict, out: Path) -> None:
    """docs/scale.json (everything) and docs/scale-measured.md (the table docs/scale.md quotes)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps(info, indent=1))
    m = info["machine"]
    lines = [
        "# Native engine vs milvus-lite, measured (generated by sprig/eval/bench/scale.py)", "",
        f"Command: `{info['command']}`", "",
        (f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, Python {m['python']}; load average "
         f"{m['load_avg_start'][0]:.1f} at start, {m.get('load_avg_end', [float('nan')])[0]:.1f} at the end (other jobs shared the cores)."), "",
        (f"Synthetic corpus fitted on {info['fit']['datasets']} ({info['fit']['real_docs']:,} real SPLADE-tiny documents); "
         f"{info['queries']} queries, k={info['k']}, {info['warmup']} warm-up queries; each system in one worker pinned to one core; "
         f"recall@{info['k']} against scipy's exact float32 top-{info['k']}. Milvus consistency level: {info['milvus_consistency_level']} "
         "(a write is visible to the next search)."), "",
        "| documents | system | setting | build s | index MiB | peak RSS MiB | QPS (wall) | p50 ms | p99 ms | QPS (thread CPU) | recall@10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n_docs, size in info["sizes"].items():
        for name, res in size["systems"].items():
            if "not_run" in res:
                lines.append(f"| {int(n_docs):,} | {name} | not run: {res['not_run']} | | | | | | | | |")
                continue
            for run in res["runs"]:
                knobs = ", ".join(f"{k}={v}" for k, v in run["knobs"].items()) or "-"
                lines.append(f"| {int(n_docs):,} | {name} | {knobs} | {res['build_s']:.0f} | {res['index_bytes'] / 2**20:,.0f} | {res['peak_rss_mib']:,.0f} | "
                             f"{run['qps_wall']:,.1f} | {run['p50_ms_wall']:.2f} | {run['p99_ms_wall']:.2f} | {run['qps_cpu']:,.1f} | {run['recall']:.4f} |")
    lines += ["", ("milvus-lite 3.x answers the Milvus API inside its worker, in Python (peers/milvus_lite.py): its thread-CPU QPS counts "
                   "only the calling thread, so read its wall-clock figures; it is the embedded engine sprig's tests use, not Milvus's C++ "
                   "engine. index MiB: sprig's files on disk; milvus-lite's data folder; scipy's matrix in RAM.")]
    (out / "scale-measured.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sprig.eval.bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=lambda s: [int(float(x)) for x in s.split(",")], default=[100_000, 1_000_000],
                        help="corpus sizes in documents, comma-separated (default 100000,1000000)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"subset of {', '.join(SYSTEMS)} (scipy always runs: the ground truth)")
    parser.add_argument("--datasets", default="scifact", help="real corpora the synthetic generator is fitted on")
    parser.add_argument("--real-index", type=Path, help="folder of sprig indexes <dataset>/docs.sqlite to take the real vectors from")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--topics", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=200, help="untimed queries before each setting")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per system and size, build and search (default 30 minutes)")
    parser.add_argument("--reuse", action="store_true", help="take a cached worker result for identical vectors, system, knobs and code")
    parser.add_argument("--core", default="0", help="the CPU the workers are pinned to ('' = no pinning)")
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "bench", help="real-vector caches, synthetic corpora and scratch")
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="folder for scale.json and scale-measured.md")
    args = parser.parse_args(argv)
    args.command = "python -m sprig.eval.bench.scale " + shlex.join(sys.argv[1:] if argv is None else argv)
    args.peers_python = None  # what sprig.eval.bench.sparse.run_system reads besides (no peers virtualenv here)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    measure(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
