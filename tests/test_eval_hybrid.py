"""`sprig eval beir --retriever hybrid`: through a built index and by brute force, on a tiny BEIR folder."""
from __future__ import annotations

import json

from sprig.eval.beir import run_beir
from sprig.eval.runs import read_trec
from tests.sprig_fixtures import TOPICS, tiny_config, write_corpus

QUERIES = {"q1": ("coffee and diabetes", "d5"), "q2": ("lung cancer from tobacco", "d7"), "q3": ("cold remedies zinc", "d9")}


def beir_folder(root):
    (root / "qrels").mkdir(parents=True)
    write_corpus(root / "corpus.jsonl")
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, (t, _) in QUERIES.items()))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, (_, d) in QUERIES.items()))
    return root


def test_hybrid_through_the_index_equals_brute_force_fusion(tiny_index, tmp_path):
    data = beir_folder(tmp_path / "beir")
    config = tiny_config()
    via_index = run_beir(data, "hybrid", tmp_path / "idx-run", config, index=tiny_index.index_dir, progress=False)
    brute = run_beir(data, "hybrid", tmp_path / "brute-run", config, progress=False)
    assert via_index["nDCG@10"] == brute["nDCG@10"] == 1.0
    runs = [read_trec(tmp_path / name / "run.trec") for name in ("idx-run", "brute-run")]
    for q in QUERIES:  # same candidates; quantised engine scores may swap near-ties further down
        assert set(runs[0][q]) == set(runs[1][q]) and len(runs[0][q]) == len(TOPICS)
    assert via_index["settings"]["encoder"]["fusion"]["method"] == "convex"
