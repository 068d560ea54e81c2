"""API load benchmark: `sprig serve` on loopback, driven by a closed-loop async httpx client.

The servers run on one core (``taskset``, one torch thread) and this load generator on another, so the
client never takes the server's CPU. Servers, all started once and kept up: the index with micro-batched
query encoding (the default config), the same index with it off (``server.query_batch=1``: each request
encodes its own query, the code path before micro-batching), and optionally an ``inference-free`` index.
For each concurrency C, every cell (a mode on a server) runs ``--slices`` times, round-robin, each slice
``seconds / slices`` long after a warm-up: load from other jobs on the machine then falls on all cells
alike. A slice counts the requests that complete inside its window (requests/s) and their latencies
(p50/p99); clients start staggered over the warm-up so a closed loop does not move in lock-step waves.
Then /answer on the batched server at ``--answer-concurrency``, with ``--max-new-tokens`` and
``--answer-timeout`` stated. Before any load, the batched and unbatched servers must rank ``--check``
queries identically (hybrid top-10, the batched one at concurrency 32).

    python -m sprig.eval.bench.api IDX --inference-free-index IDX_IF --queries DATA/scifact \\
        --out docs/benchmarks/api.json --report docs/benchmarks/api.md
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
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil

from sprig.core.config import SprigConfig
from sprig.corpus.readers import read_queries
from sprig.eval.bench.api_report import write_report
from sprig.eval.provenance import provenance

REPO = Path(__file__).resolve().parents[3]
BATCHING_OFF = {"SPRIG_SERVER__QUERY_BATCH": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `sprig serve` process pinned to ``cpu`` with ``torch_threads`` torch threads; ``env`` overrides settings."""

    def __init__(self, index: str, log: Path, cpu: int, torch_threads: int, env: dict[str, str] | None = None):
        port = _free_port()
        cmd = ["taskset", "-c", str(cpu), sys.executable, "-m", "sprig.api.cli", "serve", index, "--port", str(port), "--torch-threads", str(torch_threads)]
        self.log = log
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        self.url = f"http://127.0.0.1:{port}"
        self.cpu_clock = psutil.Process(self.proc.pid)

    def wait_ready(self, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited ({self.proc.returncode}); see {self.log}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"server did not start in {timeout:.0f} s; see {self.log}")

    def cpu_seconds(self) -> float:
        times = self.cpu_clock.cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


@dataclass
class Cell:
    """One row of the results: a path on a server at one concurrency, summed over its slices."""

    label: str
    server: Server
    path: str
    body: dict
    concurrency: int
    timeout: float = 120.0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)  # by status code or exception name
    seconds: float = 0.0
    server_cpu: float = 0.0
    load: list[float] = field(default_factory=list)

    def row(self) -> dict:
        lat = np.array(self.latencies) * 1000
        pct = (lambda q: round(float(np.percentile(lat, q)), 1)) if len(lat) else (lambda q: None)
        return {"label": self.label, "path": self.path, "concurrency": self.concurrency, "requests": len(lat), "errors": sum(self.errors.values()), "error_kinds": self.errors,
                "rps": round(len(lat) / self.seconds, 2), "p50_ms": pct(50), "p99_ms": pct(99), "seconds": round(self.seconds, 1),
                "server_cpu_share": round(self.server_cpu / self.seconds, 2), "load_avg": [round(min(self.load), 1), round(max(self.load), 1)]}


def client_keepalive_s() -> float:
    """Half the servers' keep-alive (they read the same environment): a connection the client still holds idle is
    never one the server is closing. With equal timers (httpx's and uvicorn's 5 s defaults) a client starved of its
    core could pick such a connection and send on it, and the request failed with a ReadError."""
    return SprigConfig().server.keep_alive_s / 2


async def _slice(cell: Cell, queries: list[str], seconds: float, warmup: float, offset: int) -> None:
    """One closed-loop slice: ``cell.concurrency`` clients back to back; completions inside the window count,
    and requests still out when it closes are dropped (the server finishes them during the next warm-up)."""
    c = cell.concurrency
    limits = httpx.Limits(max_connections=c, max_keepalive_connections=c, keepalive_expiry=client_keepalive_s())
    async with httpx.AsyncClient(base_url=cell.server.url, timeout=cell.timeout, limits=limits) as client:
        start = time.perf_counter()
        measure_from, stop_at = start + warmup, start + warmup + seconds

        async def client_loop(i: int) -> None:
            await asyncio.sleep(warmup * i / c)  # staggered: no lock-step waves
            n = offset + i
            while (sent := time.perf_counter()) < stop_at:
                body = {**cell.body, ("question" if cell.path == "/answer" else "query"): queries[n % len(queries)]}
                n += c
                try:
                    outcome = str((await client.post(cell.path, json=body)).status_code)
                except httpx.HTTPError as exc:
                    outcome = f"{type(exc).__name__}: {exc}"[:200]
                done = time.perf_counter()
                if measure_from <= done <= stop_at:
                    if outcome == "200":
                        cell.latencies.append(done - sent)
                    else:
                        cell.errors[outcome] = cell.errors.get(outcome, 0) + 1

        async def clock() -> None:  # the server's CPU time over the window: did it get its core?
            await asyncio.sleep(measure_from - time.perf_counter())
            cpu_at = cell.server.cpu_seconds()
            await asyncio.sleep(stop_at - time.perf_counter())
            cell.server_cpu += cell.server.cpu_seconds() - cpu_at

        cell.load.append(os.getloadavg()[0])
        clients = [asyncio.create_task(client_loop(i)) for i in range(c)]
        await clock()
        for task in clients:  # requests still out would only finish after the window: do not wait for them
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
    cell.seconds += seconds


def run_interleaved(cells: list[Cell], queries: list[str], seconds: float, slices: int, warmup: float) -> None:
    """Each cell's ``seconds`` as ``slices`` slices, round-robin over the cells."""
    for s in range(slices):
        for cell in cells:
            asyncio.run(_slice(cell, queries, seconds / slices, warmup, offset=s * 997))
            print(json.dumps({"slice": s, **cell.row()}), flush=True)


def ranking_check(batched: Server, unbatched: Server, queries: list[str]) -> dict:
    """Hybrid top-10 from the batched server under concurrency 32 against the unbatched one, query by query."""
    body = {"k": 10, "mode": "hybrid", "explain": False}

    async def concurrent() -> list[dict]:
        async with httpx.AsyncClient(base_url=batched.url, timeout=600, limits=httpx.Limits(max_connections=32)) as client:
            gate = asyncio.Semaphore(32)

            async def one(q: str) -> dict:
                async with gate:
                    return (await client.post("/search", json={**body, "query": q})).raise_for_status().json()

            return await asyncio.gather(*(one(q) for q in queries))

    together = asyncio.run(concurrent())
    alone = [httpx.post(unbatched.url + "/search", json={**body, "query": q}, timeout=600).raise_for_status().json() for q in queries]
    same = sum([h["id"] for h in a["data"]] == [h["id"] for h in b["data"]] for a, b in zip(together, alone))
    diff = max(abs(x["score"] - y["score"]) for a, b in zip(together, alone) for x, y in zip(a["data"], b["data"]))
    return {"queries": len(queries), "identical_top10": same, "max_abs_score_diff": diff}


def inference_free_vs_bm25(search: list[dict]) -> dict:
    """/search p50 and requests/s of the two lookup-only modes at concurrency 1 and 8 (issue 19's figure)."""
    return {f"{row['mode']}@{row['concurrency']}": {"p50_ms": row["p50_ms"], "rps": row["rps"]}
            for row in search if row["mode"] in ("bm25", "inference-free") and row["concurrency"] in (1, 8)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sprig.eval.bench.api", description=__doc__.split("\n\n")[0])
    p.add_argument("index", help="index directory with bm25, splade and dense (served twice: micro-batching on and off)")
    p.add_argument("--inference-free-index", help="index built with --sparse inference-free (its own server)")
    p.add_argument("--queries", required=True, help="BEIR folder or queries.jsonl to draw queries from")
    p.add_argument("--modes", default="bm25,inference-free,splade,dense,hybrid", help="search modes on the batched server")
    p.add_argument("--unbatched-modes", default="hybrid", help="modes also measured with micro-batching off")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--seconds", type=float, default=60.0, help="measured seconds per cell, over all its slices")
    p.add_argument("--slices", type=int, default=2, help="round-robin slices per cell")
    p.add_argument("--warmup", type=float, default=4.0, help="seconds before each slice's window")
    p.add_argument("--answer-concurrency", default="1,8")
    p.add_argument("--answer-seconds", type=float, default=60.0)
    p.add_argument("--answer-warmup", type=float, default=30.0)
    p.add_argument("--max-new-tokens", type=int, default=32, help="tokens generated per /answer")
    p.add_argument("--answer-k", type=int, default=2, help="passages retrieved per /answer (the prompt's length)")
    p.add_argument("--answer-timeout", type=float, default=300.0, help="client timeout per /answer, seconds")
    p.add_argument("--check", type=int, default=100, help="queries whose batched and unbatched rankings are compared first")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1)
    p.add_argument("--torch-threads", type=int, default=1, help="torch threads in each server")
    p.add_argument("--out", required=True, help="results JSON")
    p.add_argument("--report", help="markdown report to write from the results")
    p.add_argument("--logs", default="/tmp/sprig-bench-api", help="folder for the servers' logs")
    args = p.parse_args(argv)
    if args.check < 1:
        p.error("--check must be at least 1: the batched and unbatched servers' rankings are compared before any load")
    os.sched_setaffinity(0, {args.client_cpu})
    queries = list(read_queries(args.queries).values())
    modes = args.modes.split(",")
    unbatched_modes = [m for m in args.unbatched_modes.split(",") if m]
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    indexes = {"batched": args.index, "unbatched": args.index, "inference-free": args.inference_free_index}
    servers = {name: Server(indexes[name], logs / f"{name}.log", args.server_cpu, args.torch_threads, BATCHING_OFF if name == "unbatched" else None)
               for name in ["batched", "unbatched"] + (["inference-free"] if "inference-free" in modes else [])}
    home = {mode: servers["inference-free" if mode == "inference-free" else "batched"] for mode in modes}
    results: dict = {"command": "python -m sprig.eval.bench.api " + " ".join(argv or sys.argv[1:]), "settings": vars(args)}
    try:
        for server in servers.values():
            server.wait_ready()
        # First calls load lazy state (numba kernels, allocator); keep them out.
        for server, mode in [(home[m], m) for m in modes] + [(servers["unbatched"], m) for m in unbatched_modes]:
            httpx.post(server.url + "/search", json={"query": queries[0], "k": 10, "mode": mode}, timeout=600).raise_for_status()
        results["ranking_check"] = ranking_check(servers["batched"], servers["unbatched"], queries[: args.check])
        print(json.dumps(results["ranking_check"]), flush=True)
        search = []
        for c in (int(x) for x in args.concurrency.split(",")):
            cells = [Cell(f"{mode} (micro-batching on)" if mode in unbatched_modes else mode, home[mode], "/search",
                          {"k": 10, "mode": mode, "explain": True}, c) for mode in modes]
            cells += [Cell(f"{mode} (micro-batching off)", servers["unbatched"], "/search", {"k": 10, "mode": mode, "explain": True}, c)
                      for mode in unbatched_modes]
            run_interleaved(cells, queries, args.seconds, args.slices, args.warmup)
            search += [cell.row() | {"mode": cell.body["mode"], "micro_batching": cell.server is not servers["unbatched"]} for cell in cells]
        results["search"] = search
        results["inference_free_vs_bm25"] = inference_free_vs_bm25(search)
        answers = []
        for c in (int(x) for x in args.answer_concurrency.split(",") if x):
            cell = Cell("/answer", servers["batched"], "/answer", {"max_new_tokens": args.max_new_tokens, "k": args.answer_k}, c, args.answer_timeout)
            run_interleaved([cell], queries, args.answer_seconds, 1, args.answer_warmup)
            answers.append(cell.row())
        results["answer"] = answers
    finally:
        for server in servers.values():
            server.stop()
    results["provenance"] = provenance() | {"server_cpu": args.server_cpu, "client_cpu": args.client_cpu}
    Path(args.out).write_text(json.dumps(results, indent=2))
    if args.report:
        write_report(results, Path(args.report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
