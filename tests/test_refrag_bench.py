"""The REFRAG GPU benchmark end to end on the CPU at a tiny setting (the real SmolLM2 and MiniLM, the shared data):
hits from a BM25 squad-a index, every training stage for a few steps, the evaluation rows on a few held-out
questions, the report tables. Slow (minutes on 2 cores): it guards the GPU run against a bug, not a number."""
from __future__ import annotations

import json

import pytest

from sprig.core.config import SprigConfig
from sprig.eval.bench.refrag import main
from sprig.eval.bench.refrag_eval import matched_row, refrag_row
from sprig.indexer.build import build_index
from sprig.rag.refrag_projector import ChunkProjector
from tests.conftest import dataset


@pytest.mark.slow
def test_refrag_benchmark_runs_end_to_end_on_a_tiny_setting(tmp_path, capsys):
    data = dataset("squad-a").parent
    index = build_index(data / "squad-a", tmp_path / "idx", SprigConfig(device="cpu", index={"sparse": "bm25", "dense": False}),
                        progress=False).index_dir
    common = ["--data", str(data), "--hits", str(tmp_path / "hits.json"), "--device", "cpu"]
    assert main(["hits", "--index", str(index), "--data", str(data), "--out", str(tmp_path / "hits.json")]) == 0
    assert main(["train", "--k", "16", *common, "--out", str(tmp_path / "run"), "--limit", "2", "--steps", "1", "--batch", "2"]) == 0
    report = json.loads((tmp_path / "run" / "train-k16.json").read_text())
    assert report["stages"] == ["reconstruction", "continual", "qa"] and report["qa"]["steps"] == 1
    assert ChunkProjector.load(tmp_path / "run" / "k16").trained["stages"] == "reconstruction -> continual -> qa"
    assert main(["eval", "--projectors", str(tmp_path / "run"), "--sizes", "16", *common, "--out", str(tmp_path / "run"),
                 "--limit", "2", "--batch", "4", "--max-new-tokens", "4"]) == 0
    rows = json.loads((tmp_path / "run" / "eval.json").read_text())["rows"]
    assert set(rows) == {"closed-book", "oracle", "none", matched_row(), *(refrag_row(16, p) for p in (0, 0.1, 0.25))}
    assert rows[matched_row()]["context_positions"] <= rows[refrag_row(16, 0.1)]["context_positions"]
    capsys.readouterr()
    assert main(["report", "--results", str(tmp_path / "run")]) == 0
    assert "| refrag-k16@0.1 |" in capsys.readouterr().out
