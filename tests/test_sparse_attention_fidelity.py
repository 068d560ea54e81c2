"""Merging fidelity runs (eval/bench/sparse_attention_fidelity.py): shards and runs of other modes join
by question id into the summary one run over the same questions gives; checked on synthetic rows
against a plain reference of the per-mode figures."""
from __future__ import annotations

import json
import random
import statistics

import pytest

from eval.bench.sparse_attention_fidelity import RESULT, merge, summarise, table
from sprig.errors import SprigError

SETTINGS = dict(model="smol", device="cpu", dtype="float32", paragraphs=6, sink_pages=1, max_new_tokens=24)


def _rows(n: int, modes: list[str], seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        row = dict(id=f"q{i}", index=i, prompt_tokens=100 + i, golds=["x"])
        for name in modes:
            tokens = [rng.randrange(4) for _ in range(rng.randrange(1, 5))]
            row[name] = dict(tokens=tokens, answer=str(tokens), f1=rng.choice([0.0, 0.25, 0.5, 1.0]))
        rows.append(row)
    return rows


def _write(folder, rows: list[dict], modes: list[str], **settings) -> None:
    folder.mkdir(parents=True)
    summary = dict(SETTINGS, **settings, questions=len(rows), seconds=1.0, modes=dict.fromkeys(modes, {}))
    (folder / RESULT).write_text(json.dumps(dict(summary=summary, rows=rows)))


def _reference(rows: list[dict], name: str) -> dict:
    """The per-mode figures, written out plainly over the rows that hold both the mode and dense."""
    rows = [r for r in rows if name in r and "dense" in r]
    diffs = [100 * (r[name]["f1"] - r["dense"]["f1"]) for r in rows]
    agree = sum(sum(a == b for a, b in zip(r["dense"]["tokens"], r[name]["tokens"])) for r in rows)
    total = sum(max(len(r["dense"]["tokens"]), len(r[name]["tokens"])) for r in rows)
    return dict(questions=len(rows), f1=100 * statistics.mean(r[name]["f1"] for r in rows),
                f1_minus_dense=statistics.mean(diffs), f1_minus_dense_se=statistics.stdev(diffs) / len(rows) ** 0.5,
                token_agreement=agree / total,
                answer_exact_match=statistics.mean(r["dense"]["tokens"] == r[name]["tokens"] for r in rows))


def test_merged_shards_give_the_unsharded_summary(tmp_path):
    modes = ["dense", "sparse_a", "sparse_b"]
    rows = _rows(11, modes)
    for shard in range(3):
        _write(tmp_path / f"s{shard}", rows[shard::3], modes, shard=shard, shards=3)
    (tmp_path / "s3").mkdir()  # a process that died before its first question: no JSON
    got = merge([tmp_path / f"s{i}" for i in range(4)])
    assert [r["id"] for r in got["rows"]] == [r["id"] for r in rows]
    assert got["summary"]["modes"] == summarise(rows, modes)
    for name in modes:
        assert got["summary"]["modes"][name] == pytest.approx(_reference(rows, name))
    assert got["summary"]["questions"] == 11 and got["summary"]["disagreements"] == 0
    assert table(got["summary"]).count("\n") == 2 + len(modes) - 1


def test_runs_of_other_modes_join_by_question_and_pair_with_dense(tmp_path):
    rows = _rows(8, ["dense", "sparse_a", "sparse_b"])
    first = [{k: v for k, v in r.items() if k != "sparse_b"} for r in rows[:5]]
    second = [{k: v for k, v in r.items() if k != "sparse_a"} for r in rows[3:]]
    second[0] = dict(second[0], dense=dict(tokens=[9], answer="9", f1=0.0))  # another process's dense for q3
    _write(tmp_path / "a", first, ["dense", "sparse_a"])
    _write(tmp_path / "b", second, ["dense", "sparse_b"])
    _write(tmp_path / "c", _rows(10, ["sparse_c"])[8:], ["sparse_c"])  # q8, q9: no dense anywhere, so left out
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / RESULT).write_text('{"summary": {"mod')  # cut off mid-write
    got = merge([tmp_path])
    modes = got["summary"]["modes"]
    assert list(modes) == ["dense", "sparse_a", "sparse_b"]
    assert modes["sparse_a"]["questions"] == 5 and modes["sparse_b"]["questions"] == 5 and modes["dense"]["questions"] == 8
    assert got["summary"]["questions"] == 10
    assert got["summary"]["disagreements"] == 1  # q3's first dense answer (from a) is kept
    expected = [dict(dense=r["dense"], **({"sparse_a": r["sparse_a"]} if i < 5 else {}),
                     **({"sparse_b": r["sparse_b"]} if i >= 3 else {})) for i, r in enumerate(rows)]
    for name in modes:
        assert modes[name] == pytest.approx(_reference(expected, name))
    assert len(got["summary"]["unreadable"]) == 1 and str(tmp_path / "d") in got["summary"]["unreadable"][0]


def test_runs_with_other_prompts_do_not_merge(tmp_path):
    rows = _rows(4, ["dense"])
    _write(tmp_path / "a", rows, ["dense"])
    _write(tmp_path / "b", rows, ["dense"], paragraphs=16)
    with pytest.raises(SprigError, match="paragraphs=16"):
        merge([tmp_path / "a", tmp_path / "b"])
