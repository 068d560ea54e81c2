"""The REFRAG report's plots. F1 against time to first token: F1 from the GPU run (every question of squad-a
articles 16-23, with its bootstrap interval), TTFT from the CPU run (one thread, 100 questions, process CPU time),
joined on the rows both measured (none, refrag at each chunk size the CPU runs timed and each p, and the
matched recomp-extractive), one line per chunk size. F1 against the decoder positions the context takes: every
row of the GPU run, one line per chunk size through p = 0, 0.1, 0.25. Closed-book and oracle F1 are reference
lines in both."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sprig.eval.bench.refrag_eval import MATCHED, matched_row, refrag_row
from sprig.eval.bench.refrag_ttft import K
from sprig.eval.bench.refrag_ttft import rows as ttft_rows


def joined_rows(k: int = K) -> dict[str, str]:
    """GPU row name -> CPU row name, for the rows both runs measure at chunk size ``k`` (the GPU run has the
    matched recomp-extractive row at its own k only)."""
    pairs = {"none": "none"} | ({matched_row(): ttft_rows(k)[-1]} if k == MATCHED[0] else {})
    for row in ttft_rows(k):
        if row.startswith("refrag@"):
            pairs[refrag_row(k, float(row.split("@")[1]))] = row
    return pairs


def decoder_name(quality: dict) -> str:
    """The decoder's file name without its extension (what `eval` recorded), for the titles."""
    return Path(quality.get("decoder", "decoder")).stem


def plot_f1_vs_ttft(quality: dict, ttfts: Sequence[dict], path: Path) -> None:
    """One ttft.json per chunk size; none and recomp-extractive come from the run at the report's k when it is there.
    TTFT is relative to none's in the same run: separate CPU runs see different machine states (none's CPU time
    moved by a third between runs on the same box), and a ratio within a run is what carries over."""
    quality_rows = quality["rows"]
    fig, ax = _figure(quality_rows, 4.2)
    xs = [0.0]
    reference = next((t for t in ttfts if t.get("k", K) == K), ttfts[0])
    for ttft in sorted(ttfts, key=lambda t: t.get("k", K)):
        k, times = ttft.get("k", K), ttft["rows"]
        joined = [(g, c) for g, c in joined_rows(k).items() if g in quality_rows and c in times]
        relative = {c: m["ttft_cpu_ms"] / times["none"]["ttft_cpu_ms"] for c, m in times.items()}
        line = [(relative[c], quality_rows[g]) for g, c in joined if g.startswith("refrag-k")]
        if line:
            ax.errorbar([x for x, _ in line], [m["F1"] for _, m in line], yerr=_yerr([m for _, m in line]), fmt="o-",
                        capsize=3, label=f"refrag k={k}, p = 0 / 0.1 / 0.25")
        for gpu_row, cpu_row in joined if ttft is reference else []:
            if not gpu_row.startswith("refrag-k"):
                x, m = relative[cpu_row], quality_rows[gpu_row]
                ax.errorbar([x], [m["F1"]], yerr=_yerr([m]), fmt="s" if gpu_row == "none" else "D", capsize=3,
                            label=gpu_row if gpu_row == "none" else f"recomp-extractive at refrag k={K} p=0.1's positions")
        xs += [relative[c] for _, c in joined]
    ax.set_xlim(0, 1.1 * max(xs) or 1)
    ax.legend(fontsize=7, loc="lower right")  # the upper left holds the points, the top the oracle line
    ax.set_xlabel("TTFT / none's TTFT in the same CPU run (CPU time, one thread, 100 questions)")
    ax.set_ylabel("F1 (squad-a articles 16-23, 95% CI)")
    ax.set_title(f"REFRAG on {decoder_name(quality)}: F1 against TTFT")
    _save(fig, ax, path)


def plot_f1_vs_positions(quality: dict, path: Path) -> None:
    rows = quality["rows"]
    fig, ax = _figure(rows, 5.2)  # taller: the legend goes under the axes
    sizes = sorted({int(r.split("@")[0].removeprefix("refrag-k")) for r in rows if r.startswith("refrag-k")})
    for k in sizes:
        line = [rows[r] for r in sorted((r for r in rows if r.startswith(f"refrag-k{k}@")), key=lambda r: float(r.split("@")[1]))]
        ax.errorbar([m["context_positions"] for m in line], [m["F1"] for m in line], yerr=_yerr(line), fmt="o-", capsize=3,
                    label=f"refrag k={k}, p = 0 / 0.1 / 0.25")
    for row, marker in (("none", "s"), (matched_row(), "D")):
        if row in rows:
            m = rows[row]
            ax.errorbar([m["context_positions"]], [m["F1"]], yerr=_yerr([m]), fmt=marker, capsize=3,
                        label="recomp-extractive at refrag k=16 p=0.1's positions" if row != "none" else row)
    ax.set_xscale("log")
    ax.set_xlabel("decoder positions of the context (mean per question, log scale)")
    ax.set_ylabel("F1 (squad-a articles 16-23, 95% CI)")
    ax.set_title(f"REFRAG on {decoder_name(quality)}: F1 against context positions")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)  # under the axes: the points fill them
    _save(fig, ax, path)


def _figure(rows: dict, height: float):
    """A figure (off screen) with closed-book and oracle F1 as reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, height))
    _reference_lines(ax, rows)
    return fig, ax


def _reference_lines(ax, rows: dict) -> None:
    for row, style in (("oracle", "--"), ("closed-book", ":")):
        if row in rows:
            ax.axhline(rows[row]["F1"], ls=style, color="grey")
            ax.annotate(row, (0, rows[row]["F1"]), xycoords=("axes fraction", "data"), textcoords="offset points",
                        xytext=(4, 3), fontsize=8, color="grey")


def _yerr(metrics: list[dict]) -> list[list[float]]:
    return [[m["F1"] - m["F1_ci95"][0] for m in metrics], [m["F1_ci95"][1] - m["F1"] for m in metrics]]


def _save(fig, ax, path: Path) -> None:
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
