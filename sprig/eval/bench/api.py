"""API load benchmark: `sprig serve` on loopback, driven by an async httpx loop at several concurrencies.

For each mode and concurrency C, C workers send POST /search back to back (closed loop) for a fixed
time after a warm-up; we report requests/s and p50/p99 latency of successful requests. Queries cycle
through a BEIR queries file, so requests are not cache-friendly repeats.

    python -m sprig.eval.bench.api IDX --queries DATA/scifact --out docs/benchmarks/api.json
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from sprig.corpus.readers import read_queries
from sprig.eval.provenance import provenance

REPO = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(index: str, log: Path, torch_threads: int | None) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    cmd = [sys.executable, "-m", "sprig.api.cli", "serve", index, "--port", str(port)]
    if torch_threads:
        cmd += ["--torch-threads", str(torch_threads)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}); see {log}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("server did not start in 600 s")


async def _load(url: str, mode: str, queries: list[str], concurrency: int, seconds: float, warmup: float, k: int) -> dict:
    latencies: list[float] = []
    errors = 0
    counter = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        start = time.perf_counter()
        measure_from, stop_at = start + warmup, start + warmup + seconds

        async def worker() -> None:
            nonlocal errors, counter
            while (now := time.perf_counter()) < stop_at:
                q = queries[counter % len(queries)]
                counter += 1
                r = await client.post("/search", json={"query": q, "k": 10, "mode": mode, "explain": True})
                done = time.perf_counter()
                if now >= measure_from:
                    if r.status_code == 200:
                        latencies.append(done - now)
                    else:
                        errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    lat = np.array(latencies) * 1000
    return {"mode": mode, "concurrency": concurrency, "requests": len(lat), "errors": errors,
            "rps": round(len(lat) / seconds, 2),
            "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sprig.eval.bench.api", description=__doc__.split("\n\n")[0])
    p.add_argument("index", help="index directory to serve")
    p.add_argument("--queries", required=True, help="BEIR folder or queries.jsonl to draw queries from")
    p.add_argument("--modes", default="bm25,splade,dense,hybrid")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--seconds", type=float, default=20.0, help="measured time per cell")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--torch-threads", type=int, default=None)
    p.add_argument("--out", required=True, help="JSON results")
    args = p.parse_args(argv)
    queries = list(read_queries(args.queries).values())
    log = Path(args.out).with_suffix(".server.log")
    proc, url = start_server(args.index, log, args.torch_threads)
    results = []
    try:
        for mode in args.modes.split(","):  # first calls load lazy state (numba kernels, allocator); keep them out
            httpx.post(url + "/search", json={"query": queries[0], "k": 10, "mode": mode}, timeout=300).raise_for_status()
        for mode in args.modes.split(","):
            for c in (int(x) for x in args.concurrency.split(",")):
                row = asyncio.run(_load(url, mode, queries, c, args.seconds, args.warmup, 10))
                print(json.dumps(row), flush=True)
                results.append(row)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    Path(args.out).write_text(json.dumps({"index": args.index, "seconds_per_cell": args.seconds, "results": results, "provenance": provenance()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
