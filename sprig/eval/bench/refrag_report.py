"""The tables of docs/benchmarks/refrag.md, rendered from the runs' JSON (train-k*.json and eval.json from the GPU,
ttft.json from the CPU), so the report's figures are copied by code, not by hand."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from sprig.eval.bench.refrag_eval import matched_row, refrag_row
from sprig.eval.bench.refrag_ttft import K


def _ci(m: dict, key: str) -> str:
    lo, hi = m[f"{key}_ci95"]
    return f"{m[key]:.1f} ({lo:.1f} to {hi:.1f})"


def training_table(runs: list[dict]) -> str:
    header = "| k | training tokens | (a) steps / s | (b) steps / s | (c) steps / s | reconstruction accuracy 1 / 4 / 8 chunks: before -> after (a) -> final |"
    lines = [header, "|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: r["k"]):
        acc = [r["reconstruction_accuracy_before"], r["reconstruction_accuracy_after_reconstruction"],
               r[f"reconstruction_accuracy_after_{r['stages'][-1]}"]]
        steps = " | ".join(f"{r[s]['steps']} / {r[s]['seconds']:.0f}" for s in ("reconstruction", "continual", "qa"))
        accuracy = " -> ".join(" / ".join(f"{a[c]:.3f}" for c in ("1_chunks", "4_chunks", "8_chunks")) for a in acc)
        lines.append(f"| {r['k']} | {r['training_tokens']:,} | {steps} | {accuracy} |")
    return "\n".join(lines)


def quality_table(evaluation: dict) -> str:
    lines = ["| row | EM (95% CI) | F1 (95% CI) | F1 - none (95% CI) | context positions | prompt positions |", "|---|---|---|---|---|---|"]
    for row, m in evaluation["rows"].items():
        diff = _ci(m, "F1_vs_none") if "F1_vs_none" in m else ""
        lines.append(f"| {row} | {_ci(m, 'EM')} | {_ci(m, 'F1')} | {diff} | {m['context_positions']:.0f} | {m['prompt_positions']:.0f} |")
    sizes = ", ".join(f"k = {k}: {b / 2**20:.2f} MiB" for k, b in evaluation["chunk_vector_bytes"].items())
    return "\n".join(lines) + f"\n\nChunk-vector bytes (int32 spans + float16 vectors) of the squad-a paragraphs: {sizes}."


def ttft_table(ttft: dict) -> str:
    lines = [f"TTFT at k = {ttft.get('k', K)}:", "",
             "| row | prompt positions | retrieval ms | compression ms | prefill ms | TTFT ms | prefill speed-up | TTFT speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    for row in ttft["rows"]:
        m, s = ttft["rows"][row], ttft["speedup_vs_none"].get(row, {"prefill_cpu_ms_speedup": 1.0, "ttft_cpu_ms_speedup": 1.0})
        lines.append(f"| {row} | {m['prompt_tokens']:.0f} | {m['retrieve_cpu_ms']:.0f} | {m['compress_cpu_ms']:.0f} | {m['prefill_cpu_ms']:.0f} "
                     f"| {m['ttft_cpu_ms']:.0f} | {s['prefill_cpu_ms_speedup']:.2f}x | {s['ttft_cpu_ms_speedup']:.2f}x |")
    return "\n".join(lines) + "\n\n(process CPU time, one thread; means over the sample)"


def targets(evaluation: dict | None, ttft: dict | None) -> str:
    lines = []
    if ttft:
        s = ttft["speedup_vs_none"]["refrag@0"]
        lines += [f"- prefill at k = 16, p = 0 vs none: {s['prefill_cpu_ms_speedup']:.2f}x (target 10x)",
                  f"- end-to-end TTFT at k = 16, p = 0 vs none: {s['ttft_cpu_ms_speedup']:.2f}x (target 5x)"]
    if evaluation:
        rows = evaluation["rows"]
        refrag, recomp, none = rows[refrag_row(16, 0.1)], rows.get(matched_row()), rows.get("none")
        if recomp:
            lines.append(f"- F1 at k = 16, p = 0.1: {refrag['F1']:.1f} vs recomp-extractive at the same positions {recomp['F1']:.1f}")
        if none:
            lines.append(f"- F1 at k = 16, p = 0.1 minus none: {_ci(refrag, 'F1_vs_none')} points (target within 3)")
    return "\n".join(lines)


def render(results: Path, ttft_files: Sequence[Path] = ()) -> str:
    """The tables; one TTFT table per ttft.json (a chunk size each), the targets from the one at k = 16."""
    runs = [json.loads(p.read_text()) for p in sorted(results.glob("train-k*.json"))]
    evaluation = json.loads((results / "eval.json").read_text()) if (results / "eval.json").is_file() else None
    ttfts = sorted((json.loads(f.read_text()) for f in ttft_files), key=lambda t: t.get("k", K))
    parts = [training_table(runs)] if runs else []
    parts += [quality_table(evaluation)] if evaluation else []
    parts += [ttft_table(t) for t in ttfts]
    parts.append(targets(evaluation, next((t for t in ttfts if t.get("k", K) == K), None)))
    return "\n\n".join(parts) + "\n"
