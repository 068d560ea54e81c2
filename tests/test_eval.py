import json
import subprocess
import sys

import ir_measures
import pytest

from sprig.eval.metrics import evaluate
from sprig.eval.runs import read_trec, write_trec
from tests.conftest import dataset


def sprig(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sprig.api.cli", *args], capture_output=True, text=True, timeout=600)


def test_metrics_average_over_every_judged_query():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}  # q3 has no relevant document: not averaged
    run = {"q1": {"a": 2.0, "x": 1.0}}  # q2 retrieved nothing: counts as zero
    got = evaluate(run, qrels)
    per_query = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], {"q1": qrels["q1"]}, run)
    assert got["nDCG@10"] == pytest.approx(list(per_query.values())[0] / 2)
    assert got["MRR@10"] == pytest.approx(0.5) and got["R@100"] == pytest.approx(0.5)


def test_trec_runs_break_ties_by_doc_id(tmp_path):
    write_trec({"q": {"b": 1.0, "a": 1.0, "c": 2.0}}, tmp_path / "run.trec")
    lines = (tmp_path / "run.trec").read_text().splitlines()
    assert [line.split()[2] for line in lines] == ["c", "a", "b"]
    assert [line.split()[3] for line in lines] == ["1", "2", "3"]
    assert read_trec(tmp_path / "run.trec") == {"q": {"c": 2.0, "a": 1.0, "b": 1.0}}


def test_eval_beir_cli_writes_run_and_metrics(tmp_path):
    data = tmp_path / "mini"
    (data / "qrels").mkdir(parents=True)
    docs = {"d1": "the heart pumps blood", "d2": "plants need sunlight", "d3": "blood pressure and the heart"}
    (data / "corpus.jsonl").write_text("".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in docs.items()))
    (data / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "heart blood"}) + "\n" + json.dumps({"_id": "q2", "text": "sunlight"}) + "\n")
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td3\t1\nq2\td2\t1\n")
    result = sprig("eval", "beir", str(data), "--retriever", "bm25", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics) >= {"nDCG@10", "R@100", "R@1000", "MRR@10", "timings", "settings", "provenance"}
    assert metrics["settings"]["encoder"]["k1"] == 0.9 and metrics["R@100"] == 1.0
    run = read_trec(tmp_path / "out" / "run.trec")
    assert set(run["q1"]) == {"d1", "d3"} and set(run["q2"]) == {"d2"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "beir", "/no/such/dir", "--retriever", "bm25", "--out", "/tmp/x"], "dataset folder not found"),
        (["eval", "beir", "{tmp}", "--retriever", "bm25", "--out", "/tmp/x"], "no qrels/ folder"),
        (["eval", "beir", "{scifact}", "--retriever", "splade", "--splade-model", "{dense}", "--out", "/tmp/x"], "masked"),
        (["eval", "beir", "{scifact}", "--retriever", "bm25", "--k1", "-1", "--out", "/tmp/x"], "bm25.k1"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, message):
    from sprig.core.models import default_dense

    fill = {"tmp": str(tmp_path), "scifact": str(dataset("scifact")), "dense": default_dense()}
    result = sprig(*[a.format(**fill) for a in args])
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name, expected", [("scifact", 0.679), ("nfcorpus", 0.322)])
def test_bm25_reproduces_pyserini(tmp_path, name, expected):
    from sprig.core.config import SprigConfig
    from sprig.eval.beir import run_beir

    report = run_beir(dataset(name), "bm25", tmp_path, SprigConfig(), progress=False)
    assert report["nDCG@10"] == pytest.approx(expected, abs=0.01)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, retriever, expected, tol",
    [("scifact", "dense", 0.645, 0.003), ("nfcorpus", "dense", 0.316, 0.003), ("scifact", "splade", 0.647, 0.003), ("nfcorpus", "splade", 0.309, 0.003)],
)
def test_neural_retrievers_reproduce_reference(tmp_path, name, retriever, expected, tol):
    from sprig.core.config import SprigConfig
    from sprig.eval.beir import run_beir

    report = run_beir(dataset(name), retriever, tmp_path, SprigConfig(), progress=False)
    assert report["nDCG@10"] == pytest.approx(expected, abs=tol)
