"""Learning curves of `sprig train sparse` runs: dev nDCG@10 against optimiser step, one line per run.

The reports of ``python -m sprig.eval.bench.train_sparse`` hold each run's curve (``rows[*].training.curve``);
this draws them side by side, so a run that learns and one that does not are told apart at a glance.

    python -m sprig.eval.bench.train_plot --out curves.png "Gemma 3 s0=decoder-gemma3-prune-s0.json" ...
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def curves(report: dict) -> dict[str, list[tuple[int, float]]]:
    """Each trained row's (step, dev nDCG@10) points, in step order."""
    return {row: sorted((p["step"], p["dev_ndcg10"]) for p in m["training"]["curve"] if "dev_ndcg10" in p)
            for row, m in report["rows"].items() if "training" in m}


def plot_curves(runs: dict[str, dict], path: Path, title: str) -> None:
    """One line per (label, row) of ``runs`` (label -> train_sparse report), dev nDCG@10 against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, report in runs.items():
        for row, points in curves(report).items():
            steps, scores = zip(*points)
            ax.plot(steps, scores, marker="o", label=label if len(report["rows"]) == 1 else f"{label} {row}")
    ax.set_xlabel("optimiser step (8 queries each)")
    ax.set_ylabel("dev nDCG@10 (nfcorpus dev)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sprig.eval.bench.train_plot", description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="LABEL=REPORT", help="a train_sparse report and its legend label")
    ap.add_argument("--out", type=Path, required=True, help="PNG to write")
    ap.add_argument("--title", default="Learning curves")
    args = ap.parse_args(argv)
    runs = {}
    for item in args.runs:
        label, sep, file = item.rpartition("=")
        if not sep or not label:
            ap.error(f"{item!r}: expected LABEL=REPORT")
        runs[label] = json.loads(Path(file).read_text())
    plot_curves(runs, args.out, args.title)
    print(json.dumps({"plot": str(args.out)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
