import json

import pytest

from sprig.core.errors import InputError, SprigError
from sprig.corpus.chunking import to_passages
from sprig.corpus.readers import ReadStats, read_corpus, read_qrels, read_queries


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_beir_folder(tmp_path):
    write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "d1", "title": " T ", "text": "alpha"}, {"_id": "d2", "text": "beta"}])
    write_jsonl(tmp_path / "queries.jsonl", [{"_id": "q1", "text": "alpha?"}])
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    docs = list(read_corpus(tmp_path))
    assert [(d.doc_id, d.title, d.text) for d in docs] == [("d1", "T", "alpha"), ("d2", "", "beta")]
    assert read_queries(tmp_path) == {"q1": "alpha?"}
    assert read_qrels(tmp_path) == {"q1": {"d1": 1}}
    with pytest.raises(InputError, match="splits present: test"):
        read_qrels(tmp_path, "dev")


def test_jsonl_with_configured_fields(tmp_path):
    f = write_jsonl(tmp_path / "c.jsonl", [{"id": 3, "body": "x", "head": "h"}])
    (doc,) = read_corpus(f, id_field="id", text_field="body", title_field="head")
    assert (doc.doc_id, doc.title, doc.text) == ("3", "h", "x")


@pytest.mark.parametrize(
    "bad, message",
    [('{"_id": "a", "text": "ok"}\n{"_id": "b", "text": ', "malformed JSON"), ('{"_id": "a"}', "missing field 'text'"), ("[1, 2]", "expected a JSON object")],
)
def test_malformed_input_names_file_and_line(tmp_path, bad, message):
    f = tmp_path / "c.jsonl"
    f.write_text(bad)
    with pytest.raises(InputError, match=message) as err:
        list(read_corpus(f))
    assert str(f) in str(err.value) and err.value.line == bad.count("\n") + 1


def test_empty_texts_are_kept_and_counted(tmp_path):
    f = write_jsonl(tmp_path / "c.jsonl", [{"_id": "a", "text": ""}, {"_id": "b", "text": "x"}, {"_id": "c", "text": "  "}])
    stats = ReadStats()
    assert [d.doc_id for d in read_corpus(f, stats=stats)] == ["a", "b", "c"]
    assert (stats.documents, stats.empty, stats.empty_ids) == (3, 2, ["a", "c"])


def test_duplicate_ids_are_an_error(tmp_path):
    f = write_jsonl(tmp_path / "c.jsonl", [{"_id": "a", "text": "x"}, {"_id": "a", "text": "y"}])
    with pytest.raises(InputError, match="duplicate document id 'a'"):
        list(read_corpus(f))


def test_text_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "note_one.md").write_text("# hi")
    (tmp_path / "a.txt").write_text("plain")
    (tmp_path / "skip.bin").write_bytes(b"\x00")
    docs = list(read_corpus(tmp_path))
    assert [(d.doc_id, d.title) for d in docs] == [("a.txt", "a"), ("sub/note_one.md", "note one")]


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        list(read_corpus(tmp_path / "nope"))
    with pytest.raises(InputError, match="no .txt or .md files"):
        list(read_corpus(tmp_path))
    with pytest.raises(InputError, match="the corpus path is empty"):  # not the working directory (make demo, 2026-12-07)
        list(read_corpus(""))


def test_chunking_windows_overlap_and_slice_the_original(splade_encoder, tmp_path):
    text = " ".join(f"word{i}" for i in range(300))
    f = write_jsonl(tmp_path / "c.jsonl", [{"_id": "d", "text": text}, {"_id": "s", "text": "short one"}])
    passages = list(to_passages(read_corpus(f), splade_encoder.tokenizer, max_tokens=100, overlap=20))
    long_ones = [p for p in passages if p.doc_id == "d"]
    assert len(long_ones) > 2 and all(p.text in text for p in long_ones)
    assert [p.passage_id for p in passages][-1] == "s#0"
    tok = splade_encoder.tokenizer
    assert all(len(tok(p.text, add_special_tokens=False)["input_ids"]) <= 100 for p in long_ones)
    # consecutive windows share their overlap
    assert long_ones[0].text.split()[-1] in long_ones[1].text
    assert long_ones[-1].text.endswith("word299")
    with pytest.raises(SprigError, match="overlap"):
        list(to_passages(read_corpus(f), tok, max_tokens=10, overlap=10))
    assert [p.passage_id for p in to_passages(read_corpus(f))] == ["d", "s"]
