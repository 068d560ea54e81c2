"""One system, one process: build its index, then time its searches, and report JSON.

`sprig.eval.bench.sparse` starts one worker per system (`python -m sprig.eval.bench.worker --system NAME ...`,
under the peers virtualenv for pyserini, Seismic and BMP), so each system's peak memory is its own
process's peak resident set, and a system that hangs or runs out of memory is killed alone.

A system is a module in sprig/eval/bench/peers/ with three functions:
    build(docs, workdir: Path, **build_knobs) -> index                  (timed: build time)
    prepare(queries: csr_matrix) -> list                                 (untimed: the system's query type)
    search(index, query, k, **search_knobs) -> array of doc numbers      (timed per query)
and two optional ones: ``convert(docs: csr_matrix, workdir) -> docs`` (untimed: write the input
format the system ingests, e.g. Lucene's JSON collection) and ``index_bytes(index, workdir) -> int``
(default: bytes under workdir/index).
Only numpy and scipy are imported here: the worker runs in both interpreters.
"""
from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

import numpy as np

from sprig.eval.bench.vectors import VectorSet


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mib() -> float:
    """Current resident set of this process (Linux /proc)."""
    return _status_mib("VmRSS")


def peak_rss_mib() -> float:
    """Peak resident set of this process image. Not getrusage's ru_maxrss: across fork + exec that
    keeps the parent's size, so every worker would report at least the orchestrator's."""
    return _status_mib("VmHWM")


def time_searches(system, index, queries: list, k: int, knobs: dict, warmup: int) -> dict:
    """Search every query once, one at a time, after `warmup` untimed queries (JIT, caches).

    Each query gets two clocks: wall time, and the CPU time of the calling thread (every system here
    searches on the calling thread, the JVM included, since jnius calls into it on this thread). On a
    machine other jobs also load, the thread CPU time is the steadier measure of one core's work.
    """
    for q in queries[:warmup]:
        system.search(index, q, k, **knobs)
    top = np.full((len(queries), k), -1, np.int64)
    wall, cpu = np.zeros(len(queries)), np.zeros(len(queries))
    for i, q in enumerate(queries):
        c0, t0 = time.thread_time(), time.perf_counter()
        found = system.search(index, q, k, **knobs)
        wall[i], cpu[i] = time.perf_counter() - t0, time.thread_time() - c0
        found = np.asarray(found, np.int64)[:k]
        top[i, : found.size] = found
    out = {"knobs": knobs}
    for name, lat in (("wall", wall), ("cpu", cpu)):
        out |= {f"qps_{name}": len(queries) / lat.sum(), f"p50_ms_{name}": float(np.percentile(lat, 50) * 1e3),
                f"p99_ms_{name}": float(np.percentile(lat, 99) * 1e3)}
    return out | {"top": top.tolist()}


def run(system_name: str, vectors: Path, workdir: Path, k: int, build_knobs: dict, settings: list[dict], warmup: int) -> dict:
    system = importlib.import_module(f"sprig.eval.bench.peers.{system_name}")
    vs = VectorSet.load(vectors)
    if getattr(system, "INTEGER_WEIGHTS", False):
        vs = vs.integers()
    workdir.mkdir(parents=True, exist_ok=True)
    rss_loaded = rss_mib()
    t0 = time.perf_counter()
    docs = system.convert(vs.docs, workdir) if hasattr(system, "convert") else vs.docs
    convert_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = system.build(docs, workdir, **build_knobs)
    build_s = time.perf_counter() - t0
    size = system.index_bytes(index, workdir) if hasattr(system, "index_bytes") else dir_bytes(workdir / "index")
    queries = system.prepare(vs.queries)
    runs = [time_searches(system, index, queries, k, knobs, warmup) for knobs in settings]
    return {
        "system": system_name, "build_knobs": build_knobs, "convert_s": convert_s, "build_s": build_s, "index_bytes": size,
        "rss_after_load_mib": rss_loaded, "peak_rss_mib": peak_rss_mib(), "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sprig.eval.bench.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--system", required=True)
    parser.add_argument("--vectors", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--build", type=json.loads, default={}, help="build knobs, JSON object")
    parser.add_argument("--settings", type=json.loads, default=[{}], help="search knob settings, JSON list of objects")
    parser.add_argument("--warmup", type=int, default=200, help="untimed queries before each setting")
    args = parser.parse_args(argv)
    result = run(args.system, args.vectors, args.workdir, args.k, args.build, args.settings, args.warmup)
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
