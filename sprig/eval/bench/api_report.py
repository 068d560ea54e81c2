"""docs/benchmarks/api.md from the API benchmark's results (sprig.eval.bench.api): setup, the micro-batching
targets met or not, and the /search, /answer and inference-free-vs-BM25 tables."""
from __future__ import annotations

from pathlib import Path

COLUMNS = ["concurrency", "rps", "p50_ms", "p99_ms", "requests", "errors", "server_cpu_share", "load_avg"]


def _table(rows: list[dict], first: str) -> list[str]:
    lines = [f"| {first} | " + " | ".join(c.replace("_", " ") for c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for row in rows:
        cells = [row[first]] + ["–".join(map(str, row[c])) if isinstance(row[c], list) else str(row[c]) for c in COLUMNS]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return lines


def _cell(search: list[dict], mode: str, concurrency: int, batching: bool) -> dict:
    return next(r for r in search if r["mode"] == mode and r["concurrency"] == concurrency and r["micro_batching"] == batching)


def targets(search: list[dict]) -> list[tuple[str, str, bool]]:
    """(target, figures, met) for issue 22 item 5: hybrid /search with micro-batching on against off."""
    on32, off32 = _cell(search, "hybrid", 32, True), _cell(search, "hybrid", 32, False)
    on1, off1 = _cell(search, "hybrid", 1, True), _cell(search, "hybrid", 1, False)
    ratio = on32["rps"] / off32["rps"]
    return [
        ("requests/s at concurrency 32 at least 2x", f"{on32['rps']} vs {off32['rps']} req/s ({ratio:.2f}x)", ratio >= 2),
        ("p99 at concurrency 32 no worse", f"{on32['p99_ms']} vs {off32['p99_ms']} ms", on32["p99_ms"] <= off32["p99_ms"]),
        # Within 5%: two slices of the same cell differ by about that much on a quiet machine.
        ("p50 at concurrency 1 no worse (within 5%)", f"{on1['p50_ms']} vs {off1['p50_ms']} ms", on1["p50_ms"] <= 1.05 * off1["p50_ms"]),
        ("0 errors", f"{sum(r['errors'] for r in search)} errors in {sum(r['requests'] for r in search)} requests", not any(r["errors"] for r in search)),
    ]


def write_report(results: dict, path: Path) -> None:
    s, prov, check = results["settings"], results["provenance"], results["ranking_check"]
    search, answers = results["search"], results["answer"]
    loads = [x for r in search + answers for x in r["load_avg"]]
    lines = [
        "# API benchmark: micro-batched query encoding, POST /search and /answer on loopback", "",
        f"What: `sprig serve` (FastAPI + uvicorn, one process per server) over `{s['index']}` (SPLADE-tiny, BM25 and MiniLM, built",
        "with the defaults), driven by a closed-loop async httpx client: C clients each send the next request as soon",
        "as the previous one returns (k=10, explanations on), queries cycling through SciFact's queries. Micro-batching",
        "(sprig/retriever/combining.py) searches concurrent requests' queries as one batch; the same index is also served with it",
        "off (`server.query_batch=1`: each request encodes its own query, the code before micro-batching). Both servers, and",
        "the inference-free one, were up for the whole run and measured interleaved: for each concurrency every cell ran",
        f"{s['slices']} slices of {s['seconds'] / s['slices']:.0f} s, round-robin, each after {s['warmup']:.0f} s of warm-up, so load from other jobs fell on",
        "all cells alike. A slice counts the requests completing inside its window; latency is client-side.", "",
        f"Command: `{results['command']}`", "",
        (f"Machine: {prov['machine']['cpu']}, {prov['machine']['cores']} cores, CPU only; every server pinned to core {prov['server_cpu']} "
        f"(taskset, {s['torch_threads']} torch thread), the load generator to core {prov['client_cpu']}. Commit {prov['commit']}, {prov['date']}, "
        f"torch {prov['torch']}. The machine was shared with other engineers' jobs during the run: 1-minute load average "
        f"{min(loads):.1f} to {max(loads):.1f}; \"server cpu share\" is the server's CPU seconds per second of the window (1.0 = "
         "it had its core to itself)."), "",
        (f"Ranking check before the load: {check['identical_top10']} of {check['queries']} hybrid top-10s identical between the batched "
        f"server (queries sent 32 at a time) and the unbatched one; largest score difference {check['max_abs_score_diff']:.2e}."), "",
        "## Targets (issue 22, item 5): hybrid /search, micro-batching on vs off, same run", "",
        "| target | on vs off | met |", "|---|---|---|",
        *(f"| {name} | {figures} | {'yes' if met else 'no'} |" for name, figures, met in targets(search)), "",
        "## POST /search", "",
        *_table(search, "label"), "",
        *(f"Errors of {r['label']} at concurrency {r['concurrency']}: {r['error_kinds']}." for r in search + answers if r.get("error_kinds")), "",
        (f"## POST /answer (micro-batching on; k {s['answer_k']}, max_new_tokens {s['max_new_tokens']}, client timeout {s['answer_timeout']:.0f} s, "
         f"{s['answer_warmup']:.0f} s warm-up, {s['answer_seconds']:.0f} s measured)"), "",
        *_table(answers, "label"), "",
    ]
    versus = results.get("inference_free_vs_bm25", {})
    if versus:
        figure = "; ".join(f"{key}: p50 {v['p50_ms']} ms, {v['rps']} req/s" for key, v in versus.items())
        lines += ["## inference-free vs BM25 over HTTP (issue 19, item 3)", "",
                  (f"/search at concurrency 1 and 8, from the table above ({figure}). JSON key `inference_free_vs_bm25` of "
                   f"{path.with_suffix('.json').name}."), ""]
    path.write_text("\n".join(lines))
