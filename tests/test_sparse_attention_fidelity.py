"""Fidelity runs (eval/bench/sparse_attention_fidelity.py): prompts are built from a synthetic SQuAD file
with a word counter standing in for the tokenizer; shards and runs of other modes join by question id into
the summary one run over the same questions gives, checked on synthetic rows against a plain reference of
the per-mode figures."""
from __future__ import annotations

import hashlib
import json
import random
import statistics
from pathlib import Path

import pytest

from sprig.core.errors import SprigError
from sprig.eval.bench.sparse_attention_fidelity import (
    RESULT,
    merge,
    rag_prompts,
    summarise,
    table,
)

# words per paragraph, per article: article 1 cannot fill 90% of 400 words, article 2 ends in one over 400
LENGTHS = [[14, 28, 37, 35, 34, 12, 18, 13, 25, 34, 24, 25, 30, 22, 35, 16, 13, 25, 10, 38],
           [36, 22, 23, 29, 34, 34],
           [10, 32, 24, 18, 33, 35, 17, 28, 40, 13, 38, 20, 10, 10, 10, 30, 27, 10, 40, 38, 450]]


def _words(text: str) -> int:
    return len(text.split())


def _superadditive(text: str) -> int:
    """Counts more for a joined text than for its blocks, as tokenizers may: the block-by-block estimate
    falls short and the exact count of the final text has to trim it."""
    return _words(text) + _words(text) // 20


def _squad(folder: Path, lengths: list[list[int]] = LENGTHS) -> Path:
    """A SQuAD-format file: paragraph j of article a has lengths[a][j] words and one question, id a{a}_{j}."""
    articles = [dict(title=f"t{a}", paragraphs=[
        dict(context=" ".join(f"w{a}.{j}.{k}" for k in range(n)),
             qas=[dict(id=f"a{a}_{j}", question=f"q {a} {j}?", answers=[dict(text=f"w{a}.{j}.0", answer_start=0)])])
        for j, n in enumerate(article)]) for a, article in enumerate(lengths)]
    path = folder / "squad.json"
    path.write_text(json.dumps(dict(data=articles)))
    return path


def _blocks(item: dict) -> list[str]:
    """The passage blocks of an item's prompt."""
    user = item["messages"][1]["content"]
    return user.split("Passages:\n", 1)[1].split("\n\nQuestion: ", 1)[0].split("\n\n")


@pytest.mark.parametrize("count", [_words, _superadditive])
def test_context_tokens_fill_prompts_to_between_90_and_100_percent(tmp_path, count):
    path, budget = _squad(tmp_path), 400
    items = rag_prompts(path, 100, paragraphs=6, context_tokens=budget, count_tokens=count)
    paragraphs = json.loads(path.read_text())["data"]
    order = sorted(items, key=lambda it: tuple(int(x) for x in it["id"][1:].split("_"))[::-1])
    assert [it["id"] for it in items] == [it["id"] for it in order]  # round-robin over articles, as without it
    assert {it["id"][:2] for it in items} == {"a0", "a2"} and len(items) > 8
    for item in items:
        a, j = (int(x) for x in item["id"][1:].split("_"))
        blocks = _blocks(item)
        texts = [b.split(" ", 1)[1] for b in blocks]
        assert [b.split(" ", 1)[0] for b in blocks] == [f"[{k + 1}]" for k in range(len(blocks))]
        assert paragraphs[a]["paragraphs"][j]["context"] in texts
        assert len(set(texts)) == len(texts) and set(texts) <= {p["context"] for p in paragraphs[a]["paragraphs"]}
        assert item["context_tokens"] == count("\n\n".join(blocks))
        assert 0.9 * budget <= item["context_tokens"] <= budget


def test_articles_that_cannot_fill_90_percent_give_no_questions(tmp_path):
    path, short = _squad(tmp_path), sum(LENGTHS[1]) + len(LENGTHS[1])  # article 1's words with its "[k]"s
    ids = [it["id"] for it in rag_prompts(path, 100, paragraphs=1, context_tokens=400, count_tokens=_words)]
    assert short < 0.9 * 400 and not [i for i in ids if i.startswith("a1_")]
    assert "a2_20" not in ids  # its gold paragraph alone is over 400 words
    ids = [it["id"] for it in rag_prompts(path, 100, paragraphs=1, context_tokens=short, count_tokens=_words)]
    assert {f"a1_{j}" for j in range(len(LENGTHS[1]))} <= set(ids)  # the whole article fits exactly


def test_exact_count_over_the_budget_drops_paragraphs_until_it_fits(tmp_path):
    """Ten 10-word paragraphs, 11 words each as a block: the estimate fits all ten in 110, the superadditive
    exact count of the joined text is 115, so one is dropped: nine, 99 + 4 tokens."""
    path = _squad(tmp_path, [[10] * 10])
    items = rag_prompts(path, 100, paragraphs=1, context_tokens=110, count_tokens=_superadditive)
    assert len(items) == 10 and all(len(_blocks(it)) == 9 and it["context_tokens"] == 103 for it in items)


def test_paragraph_count_prompts_are_unchanged(tmp_path):
    """Without --context-tokens the prompts are those of the code before it (pinned), `paragraphs` blocks each."""
    path = _squad(tmp_path)
    items = rag_prompts(path, 100, paragraphs=7, seed=3)
    assert all(len(_blocks(it)) == 7 for it in items)
    assert {it["id"][:2] for it in items} == {"a0", "a2"} and len(items) == 41  # article 1 has only 6 paragraphs
    pinned = "f3a9a887798650bc2e8c58295a11c924796a194be3b59c3adb6db08989b9ab73"  # these prompts at commit 588377d
    assert hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest() == pinned
    counted = rag_prompts(path, 100, paragraphs=7, seed=3, count_tokens=_words)
    assert [{k: v for k, v in it.items() if k != "context_tokens"} for it in counted] == items
    assert [it["context_tokens"] for it in counted] == [_words("\n\n".join(_blocks(it))) for it in items]

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


def test_runs_with_other_context_tokens_do_not_merge(tmp_path):
    rows = _rows(4, ["dense"])
    _write(tmp_path / "old", rows, ["dense"])  # written before --context-tokens: no such key
    _write(tmp_path / "new", rows, ["dense"], context_tokens=None)
    assert merge([tmp_path / "old", tmp_path / "new"])["summary"]["context_tokens"] is None
    _write(tmp_path / "a", rows, ["dense"], paragraphs=None, context_tokens=7000)
    _write(tmp_path / "b", rows, ["dense"], paragraphs=None, context_tokens=6000)
    with pytest.raises(SprigError, match="context_tokens=6000"):
        merge([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(SprigError, match="context_tokens=7000"):
        merge([tmp_path / "old", tmp_path / "a"])


def test_plot_draws_summaries_of_several_lengths(tmp_path):
    from sprig.eval.bench.sparse_attention_fidelity import plot

    paths = []
    for i, tokens in enumerate((1000, 3000)):
        modes = ["dense", "sparse_a"]
        rows = _rows(6, modes, seed=i)
        summary = dict(mean_prompt_tokens=tokens, modes=summarise(rows, modes))
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(dict(summary=summary)))
    plot(paths, tmp_path / "out.png")
    assert (tmp_path / "out.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_names_a_file_that_is_not_a_summary(tmp_path):
    from sprig.eval.bench.sparse_attention_fidelity import plot

    bad = tmp_path / "rows_only.json"
    bad.write_text(json.dumps(dict(rows=[])))
    with pytest.raises(SprigError, match="rows_only.json: not a fidelity summary"):
        plot([bad], tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()
