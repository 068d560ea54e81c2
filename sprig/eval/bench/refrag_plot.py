"""F1 against time to first token for the REFRAG report: F1 from the GPU run (every question of squad-a articles
16-23, with its bootstrap interval), TTFT from the CPU run (one thread, 100 questions, process CPU time), joined
on the rows both measured (none, refrag k=16 at each p, and the matched recomp-extractive); closed-book and
oracle F1 as reference lines."""
from __future__ import annotations

from pathlib import Path

from sprig.eval.bench.refrag_eval import matched_row, refrag_row
from sprig.eval.bench.refrag_ttft import ROWS as TTFT_ROWS
from sprig.eval.bench.refrag_ttft import K


def joined_rows() -> dict[str, str]:
    """GPU row name -> CPU row name, for the rows both runs measure."""
    pairs = {"none": "none", matched_row(): TTFT_ROWS[-1]}
    for row in TTFT_ROWS:
        if row.startswith("refrag@"):
            pairs[refrag_row(K, float(row.split("@")[1]))] = row
    return pairs


def plot_f1_vs_ttft(quality: dict, ttft: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, times = quality["rows"], ttft["rows"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for row, style in (("oracle", "--"), ("closed-book", ":")):
        if row in rows:
            ax.axhline(rows[row]["F1"], ls=style, color="grey")
            ax.annotate(row, (0, rows[row]["F1"]), textcoords="offset points", xytext=(4, 3), fontsize=8, color="grey")
    xs = [0.0]
    for gpu_row, cpu_row in joined_rows().items():
        if gpu_row in rows and cpu_row in times:
            x, m = times[cpu_row]["ttft_cpu_ms"] / 1000, rows[gpu_row]
            xs.append(x)
            ax.errorbar([x], [m["F1"]], yerr=[[m["F1"] - m["F1_ci95"][0]], [m["F1_ci95"][1] - m["F1"]]], fmt="o", capsize=3)
            ax.annotate(gpu_row, (x, m["F1"]), textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.set_xlim(0, 1.3 * max(xs) or 1)  # room for the labels right of the points
    ax.set_xlabel("time to first token, s (CPU time, one thread, mean of 100 questions)")
    ax.set_ylabel("F1 (squad-a articles 16-23, 95% CI)")
    ax.set_title("REFRAG on SmolLM2-135M: F1 against TTFT")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
