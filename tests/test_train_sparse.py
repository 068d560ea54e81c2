"""`sprig train sparse`: the losses against plain references, a tiny real training run on scifact train queries
(loss falls, the saved model loads through sprig and encodes as trained), a LoRA adapter round trip on a tiny random
Llama, and the one-line errors for test splits, missing splits and adapters whose base does not match."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sprig.api.cli import main
from sprig.core.config import (
    InferenceFreeConfig,
    SpladeConfig,
    SprigConfig,
    TrainConfig,
)
from sprig.core.errors import SprigError
from sprig.core.models import default_splade
from sprig.corpus.readers import read_qrels
from sprig.train.datasets import load_judged, parse_split
from sprig.train.losses import flops, flops_ramp, idf_penalty, info_nce, kl_distill
from sprig.train.teachers import combine
from tests.conftest import dataset

# --- losses against plain loops ------------------------------------------------------------------


def test_info_nce_is_minus_log_softmax_of_the_positive():
    scores, positives = torch.randn(3, 8), torch.tensor([0, 4, 7])
    plain = -sum(math.log(math.exp(scores[i, p]) / sum(math.exp(s) for s in scores[i])) for i, p in enumerate(positives.tolist())) / 3
    assert float(info_nce(scores, positives)) == pytest.approx(plain, rel=1e-5)


def test_kl_distill_is_kl_of_the_tempered_teacher_softmax():
    student, teacher, tau = torch.randn(2, 5), torch.rand(2, 5), 0.1
    total = 0.0
    for s, t in zip(student.tolist(), teacher.tolist()):
        p = [math.exp(x / tau) / sum(math.exp(y / tau) for y in t) for x in t]
        q = [math.exp(x) / sum(math.exp(y) for y in s) for x in s]
        total += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    assert float(kl_distill(student, teacher, tau)) == pytest.approx(total / 2, rel=1e-4)
    assert float(kl_distill(teacher / 0.1, teacher, 0.1)) == pytest.approx(0.0, abs=1e-6)


def test_flops_plain_and_idf_aware():
    weights = torch.rand(4, 6)
    means = [sum(weights[r, k].item() for r in range(4)) / 4 for k in range(6)]
    assert float(flops(weights)) == pytest.approx(sum(m * m for m in means), rel=1e-5)
    idf = np.array([8.0, 4.0, 0.8, 0.1, 8.0, 2.0])
    phi = idf_penalty(idf, floor=0.05)
    assert phi.tolist() == pytest.approx([1.0, 2.0, 10.0, 20.0, 1.0, 4.0])  # 1 / max(idf / 8, 0.05): common terms cost more
    assert float(flops(weights, phi)) == pytest.approx(sum(p * m * m for p, m in zip(phi.tolist(), means)), rel=1e-5)


def test_flops_weight_ramps_in_quadratically():
    assert [flops_ramp(s, 100, 0.2) for s in (0, 10, 20, 50)] == pytest.approx([0.0, 0.25, 1.0, 1.0])
    assert flops_ramp(1, 100, 0.0) == 1.0


def test_teachers_are_min_max_normalised_per_query_then_averaged():
    raw = np.array([[30.0, 0.9, 12.0], [10.0, 0.1, 12.0], [20.0, 0.5, 12.0]])  # bm25, dense, splade (splade cannot tell them apart)
    got = combine(raw, {"bm25": 1.0, "dense": 3.0, "splade": 0.0}, ["bm25", "dense", "splade"])
    assert got.tolist() == pytest.approx([(1 + 3 * 1) / 4, 0.0, (0.5 + 3 * 0.5) / 4])
    with pytest.raises(SprigError, match="teacher_weights"):
        combine(raw, {"bm25": 0.0}, ["bm25", "dense", "splade"])


def test_batches_put_each_querys_positive_first_with_its_own_teacher_scores():
    from sprig.train.examples import TrainingQuery, batches

    queries = [TrainingQuery(f"q{i}", tuple(f"q{i}-d{j}" for j in range(5)), np.array([True, True, False, False, False]),
                             np.array([0.9, 0.8, 0.1, 0.2, 0.3], np.float32)) for i in range(6)]
    stream = batches(queries, TrainConfig(batch_queries=3, negatives=4), np.random.default_rng(0))
    seen = set()
    for _ in range(4):  # two passes over six queries
        batch = next(stream)
        assert len(batch.docs) == 3 * 5 and batch.teacher.shape == (3, 5)
        for i, query in enumerate(batch.queries):
            own = batch.docs[i * 5 : (i + 1) * 5]
            assert all(d.startswith(query + "-") for d in own) and own[0] in (f"{query}-d0", f"{query}-d1")
            assert batch.teacher[i, 0] >= 0.8 and np.all(batch.teacher[i, 1:] <= 0.3)  # 3 negatives drawn 4 times: with replacement
            seen.add(query)
    assert seen == {q.text for q in queries}


# --- the loop: score scale, step 0, time limit (a toy bag-of-terms student) -----------------------------


class BagStudent:
    """A text is "t<id> t<id> ..."; its weight on term t is ``magnitude`` x count x softplus(theta_t), theta trained."""

    encodes_queries, score_scale, device, vocab_size = True, 1.0, "cpu", 8

    def __init__(self, magnitude: float = 1.0):
        self.theta, self.magnitude = torch.nn.Parameter(torch.zeros(self.vocab_size)), magnitude
        self.idf = np.ones(self.vocab_size, np.float32)

    def doc_weights(self, texts):
        counts = torch.zeros(len(texts), self.vocab_size)
        for row, text in enumerate(texts):
            for token in text.split():
                counts[row, int(token[1:])] += 1
        return self.magnitude * counts * torch.nn.functional.softplus(self.theta)

    query_weights = doc_weights

    def encode_documents(self, texts, progress=False):
        from sprig.core.types import SparseVec

        with torch.no_grad():
            return [SparseVec.from_pairs(np.flatnonzero(row.numpy()), row.numpy()[row.numpy() > 0]) for row in self.doc_weights(texts)]

    encode_queries = encode_documents

    def parameters(self):
        return [self.theta]

    def train(self, mode=True):
        pass

    def state(self):
        return {"theta": self.theta.detach().clone()}

    def load_state(self, state):
        self.theta.data.copy_(state["theta"])


def _toy_data():
    from sprig.train.datasets import Judged
    from sprig.train.dev import DevSet
    from sprig.train.examples import TrainingQuery

    queries = [TrainingQuery(f"t{i} t{i + 1}", (f"t{i} t{i + 1} t{i}", f"t{i + 2}", f"t{i + 3} t{i}", f"t{i + 4}"),
                             np.array([True, False, False, False]), np.array([1.0, 0.0, 0.5, 0.0], np.float32)) for i in range(4)]
    docs = {f"d{i}": f"t{i} t{(i + 3) % 8}" for i in range(8)}
    dev = DevSet(Judged("toy", "dev", docs, {f"q{i}": f"t{i}" for i in range(8)}, {f"q{i}": {f"d{i}": 1} for i in range(8)}))
    return queries, dev


def test_auto_score_scale_gives_logits_of_unit_spread_whatever_the_magnitude():
    from sprig.train.examples import Batch
    from sprig.train.loop import batch_scores, score_scale

    queries, _ = _toy_data()
    batch = Batch([q.text for q in queries[:2]], [d for q in queries[:2] for d in q.doc_texts], np.zeros((2, 4), np.float32))
    for magnitude in (1.0, 1000.0):  # an untrained echo head scores in the hundreds of thousands
        student = BagStudent(magnitude)
        scale = score_scale(student, batch, TrainConfig(score_scale="auto"))
        with torch.no_grad():
            assert float((batch_scores(student, batch)[2] * scale).std(dim=1).mean()) == pytest.approx(1.0, rel=1e-4)
    assert score_scale(student, batch, TrainConfig()) == 1.0  # the student's default
    assert score_scale(student, batch, TrainConfig(score_scale=0.5)) == 0.5


def test_step_zero_is_kept_when_no_later_evaluation_beats_it(monkeypatch):
    from sprig.train import loop

    queries, dev = _toy_data()
    student = BagStudent()
    scores = iter([0.5, 0.3, 0.4])  # training only hurts dev
    monkeypatch.setattr(loop, "evaluate", lambda s, d: {"dev_ndcg10": next(scores), "dev_doc_nnz": 2.0})
    config = TrainConfig(batch_queries=2, negatives=3, steps=4, eval_every=2, lr=0.5, flops_doc=0.0, flops_query=0.0)
    trained = loop.train_student(student, queries, dev, config, progress=False)
    assert [p["step"] for p in trained.curve] == [0, 2, 4] and trained.best_step == 0 and trained.best_dev_ndcg10 == 0.5
    assert torch.equal(student.theta.detach(), torch.zeros(8))  # the untrained weights are back
    assert {"contrastive", "distill", "flops_doc", "flops_query", "loss", "train_doc_nnz"} <= trained.curve[1].keys()


def test_without_keep_untrained_the_best_trained_step_wins(monkeypatch):
    from sprig.train import loop

    queries, dev = _toy_data()
    student = BagStudent()
    scores = iter([0.5, 0.3, 0.4])
    monkeypatch.setattr(loop, "evaluate", lambda s, d: {"dev_ndcg10": next(scores), "dev_doc_nnz": 2.0})
    config = TrainConfig(batch_queries=2, negatives=3, steps=4, eval_every=2, lr=0.5, flops_doc=0.0, flops_query=0.0,
                         keep_untrained=False)
    trained = loop.train_student(student, queries, dev, config, progress=False)
    assert [p["step"] for p in trained.curve] == [0, 2, 4] and trained.best_step == 4 and trained.best_dev_ndcg10 == 0.4
    assert not torch.equal(student.theta.detach(), torch.zeros(8))  # the last (trained) weights stay


def test_time_limit_stops_training_with_a_last_dev_evaluation():
    from sprig.train.loop import train_student

    queries, dev = _toy_data()
    config = TrainConfig(batch_queries=2, negatives=3, steps=50, eval_every=20, time_limit_s=1e-9)
    trained = train_student(BagStudent(), queries, dev, config, progress=False)
    assert trained.steps == 1 and trained.planned_steps == 50 and [p["step"] for p in trained.curve] == [0, 1]
    assert 0.0 <= trained.curve[0]["dev_ndcg10"] <= 1.0 and trained.curve[0]["dev_doc_nnz"] == 2.0


# --- bad input -------------------------------------------------------------------------------------


def test_test_splits_and_missing_splits_are_one_line_errors(capsys):
    with pytest.raises(SprigError, match="reporting only"):
        parse_split("nfcorpus:test", "train.dev_set")
    with pytest.raises(SprigError, match="not DATASET:SPLIT"):
        parse_split("scifact", "train.train_sets")
    with pytest.raises(SprigError, match="no qrels for split 'dev'"):
        load_judged(dataset("scifact").parent, "scifact:dev", "train.train_sets")
    assert main(["train", "sparse", "--out", "/nonexistent", "--data", str(dataset("scifact").parent), "--train", "scifact:dev"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no qrels for split 'dev'" in err


# --- a tiny real training run ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_beir(tmp_path_factory) -> Path:
    """A BEIR folder cut from scifact train: 8 training and 6 dev queries, their judged documents and 12 others."""
    source, root = dataset("scifact"), tmp_path_factory.mktemp("tiny-beir")
    qrels = read_qrels(source, "train")
    qids = list(qrels)[:14]
    docs = {d for q in qids for d in qrels[q]}
    with (source / "corpus.jsonl").open() as fh:
        rows = [json.loads(line) for line in fh]
    kept = [r for i, r in enumerate(rows) if r["_id"] in docs or i < 12]
    folder = root / "tiny"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    queries = [json.loads(line) for line in (source / "queries.jsonl").open()]
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries if q["_id"] in qids))
    for split, chosen in (("train", qids[:8]), ("dev", qids[8:])):
        lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{r}" for q in chosen for d, r in qrels[q].items()]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


def test_tiny_inference_free_run_learns_and_loads_through_sprig(tiny_beir, tmp_path):
    """`sprig train sparse` (flags + a --config file for the rest) on 8 training queries, 8 steps."""
    from sprig.encoders.inference_free import InferenceFreeEncoder

    settings = tmp_path / "train.json"
    settings.write_text(json.dumps({"train": {"negatives": 3, "mine_depth": 8, "negatives_kept": 4, "doc_max_length": 48, "flops_warmup": 1.0}}))
    assert main(["train", "sparse", "--out", str(tmp_path / "out"), "--data", str(tiny_beir), "--teachers", str(tmp_path / "teachers"),
                 "--train", "tiny:train", "--dev", "tiny:dev", "--steps", "8", "--train-batch", "4", "--lr", "1e-3", "--eval-every", "4",
                 "--device", "cpu", "--config", str(settings)]) == 0
    report = json.loads((tmp_path / "out" / "training.json").read_text())
    assert report["settings"]["negatives"] == 3 and report["steps"] == 8 and len(report["curve"]) == 3
    assert report["curve"][0].keys() == {"step", "dev_ndcg10", "dev_doc_nnz"} and report["curve"][0]["step"] == 0  # untrained
    assert report["score_scale"] == 1.0 and report["best_dev_ndcg10"] == max(p["dev_ndcg10"] for p in report["curve"])
    first, last = report["curve"][1], report["curve"][-1]
    assert last["contrastive"] < first["contrastive"]  # the ranking loss falls (the ramped FLOPS term may rise)
    assert json.loads((tmp_path / "teachers" / "tiny-train.json").read_text())["teachers"] == ["bm25", "dense", "splade"]
    model = Path(report["model"])
    assert (model / "idf.json").is_file() and (model / "model.safetensors").stat().st_size < 10_000_000  # bf16 SPLADE-tiny
    loaded = InferenceFreeEncoder(InferenceFreeConfig(model=str(model), query_weights="model", doc_max_length=48), device="cpu")
    original = InferenceFreeEncoder(InferenceFreeConfig(query_weights="model", model=str(_untrained_with_idf(model, tmp_path))), device="cpu")
    text = "Vitamin D deficiency is associated with a higher risk of fractures in older adults."
    trained_vec, untrained_vec = loaded.encode_documents([text])[0], original.encode_documents([text])[0]
    assert len(trained_vec) > 0 and trained_vec.to_dict() != untrained_vec.to_dict()  # the weights moved, and sprig reads them
    query = loaded.encode_queries(["vitamin d fractures"])[0]
    assert len(query) >= 3 and np.all(query.weights > 0)


@pytest.mark.slow
def test_smollm2_echo_student_starts_from_small_losses_and_keeps_its_dev_score(tiny_beir, tmp_path):
    """The decoder fix (issue 18): SmolLM2's raw echo scores (~4e5, spread ~8e3) are scaled to a spread of 1, so the
    losses start O(1-10) and fall, and dev nDCG@10 does not collapse (the unscaled GPU run fell from 0.07 to 0.01).
    About 11 minutes on 2 busy cores (12 steps, 3 dev evaluations of SmolLM2 on CPU)."""
    from sprig.core.config import SprigConfig
    from sprig.train.run import run_training

    train = TrainConfig(student="decoder", train_sets=["tiny:train"], dev_set="tiny:dev", negatives=1, mine_depth=8, negatives_kept=4,
                        batch_queries=2, steps=12, eval_every=6, doc_max_length=16, query_max_length=8, lr=2e-4, flops_doc=1e-6,
                        flops_query=1e-6, flops_warmup=1.0)
    report = run_training(SprigConfig(device="cpu", train=train), tiny_beir, tmp_path / "teachers", tmp_path / "out", progress=False)
    start, first, last = report["curve"]
    assert report["score_scale"] < 1e-3  # 1 / a spread in the thousands
    ranking = [p["contrastive"] + p["distill"] for p in (first, last)]
    assert ranking[0] < 10 and ranking[1] < ranking[0]
    assert last["dev_ndcg10"] >= 0.5 * start["dev_ndcg10"] and report["best_dev_ndcg10"] >= start["dev_ndcg10"]


def _untrained_with_idf(trained: Path, tmp_path: Path) -> Path:
    """SPLADE-tiny as shipped, beside the trained model's idf.json (the same query side, untrained documents)."""
    import shutil

    folder = tmp_path / "untrained"
    shutil.copytree(default_splade(), folder)
    shutil.copy(trained / "idf.json", folder / "idf.json")
    return folder


# --- LoRA adapters on a tiny random Llama ---------------------------------------------------------


def _tiny_llama(folder: Path, hidden: int) -> Path:
    """A random 2-layer Llama (tied head) with SPLADE-tiny's tokenizer: no download, built from a config."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(default_splade())
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_lora_adapter_round_trip_keeps_the_head_frozen(tmp_path):
    from sprig.encoders.decoder_splade import DecoderSpladeEncoder
    from sprig.train.examples import Batch
    from sprig.train.loop import step_losses
    from sprig.train.students import DecoderStudent

    base = _tiny_llama(tmp_path / "base", 32)
    config = TrainConfig(student="decoder", init=str(base), negatives=1, doc_max_length=16, query_max_length=16, lora_rank=4,
                         lora_targets=["q_proj", "v_proj", "down_proj"], flops_doc=0.0, flops_query=0.0)
    student = DecoderStudent(config, "cpu")
    head_before = student.encoder.model.get_output_embeddings().weight.detach().clone()
    texts = ["Coffee lowers the risk of type 2 diabetes.", "Smoking causes lung cancer.", "Statins lower cholesterol.", "Sleep and obesity."]
    before = student.encoder.pooled(texts, 16)
    optimizer = torch.optim.AdamW(student.parameters(), lr=5e-2)
    batch = Batch(["coffee diabetes", "smoking cancer"], texts, np.array([[1.0, 0.0], [1.0, 0.0]], np.float32))
    for _ in range(3):
        optimizer.zero_grad()
        sum(step_losses(student, batch, config, None, 1.0)[0].values()).backward()
        optimizer.step()
    assert all("lora_" in n for n, p in student.peft.named_parameters() if p.requires_grad)
    assert torch.equal(student.encoder.model.get_output_embeddings().weight, head_before)  # tied head and embeddings frozen
    student.train(False)
    after = student.encoder.pooled(texts, 16)
    assert not torch.allclose(before, after, atol=1e-4)  # the adapter changes the vectors
    student.save(tmp_path / "adapter")

    loaded = DecoderSpladeEncoder(SpladeConfig(backbone="causal", adapter=str(tmp_path / "adapter"), doc_top_k=0, query_top_k=0), "cpu")
    assert loaded.settings()["model"] == str(base) and loaded.settings()["adapter"] == str(tmp_path / "adapter")
    assert torch.allclose(loaded.pooled(texts, 16), after, atol=1e-4)  # merged into the base, as trained

    other = _tiny_llama(tmp_path / "other", 64)
    with pytest.raises(SprigError, match="was trained on") as err:
        DecoderSpladeEncoder(SpladeConfig(backbone="causal", model=str(other), adapter=str(tmp_path / "adapter")), "cpu")
    assert "\n" not in str(err.value)
    with pytest.raises(SprigError, match="not a LoRA adapter folder"):
        DecoderSpladeEncoder(SpladeConfig(backbone="causal", model=str(base), adapter=str(base)), "cpu")


def test_missing_peft_is_a_one_line_error_naming_the_extra(monkeypatch):
    from sprig.encoders.lora_adapter import require_peft

    monkeypatch.setitem(sys.modules, "peft", None)  # what an install without the `train` extra sees
    with pytest.raises(SprigError, match=r"--adapter needs peft .*sprig\[train\]"):
        require_peft("--adapter")


def test_keep_top_k_keeps_each_rows_largest_weights_and_their_gradient_only():
    from sprig.train.students import keep_top_k

    weights = torch.rand(3, 50, requires_grad=True)
    pruned = keep_top_k(weights, 5)
    for row, out in zip(weights.detach(), pruned.detach()):
        largest = sorted(range(50), key=lambda j: -float(row[j]))[:5]
        assert sorted(out.nonzero().flatten().tolist()) == sorted(largest)
        assert torch.equal(out[largest], row[largest])
    pruned.sum().backward()
    assert torch.equal(weights.grad, (pruned.detach() > 0).float())  # no gradient reaches a pruned weight
    assert keep_top_k(weights, 0) is weights and keep_top_k(weights, 50) is weights


def test_decoder_student_trains_on_the_pruned_vectors_when_asked(tmp_path):
    from sprig.train.students import DecoderStudent

    base = _tiny_llama(tmp_path / "base", 32)
    texts = ["Coffee lowers the risk of type 2 diabetes.", "Smoking causes lung cancer."]
    for prune, expected in ((True, 7), (False, None)):
        config = TrainConfig(student="decoder", init=str(base), doc_max_length=16, query_max_length=16, lora_rank=4,
                             lora_targets=["q_proj"], prune_in_training=prune)
        student = DecoderStudent(config, "cpu")
        student.encoder.doc_top_k = 7
        nnz = (student.doc_weights(texts) > 0).sum(1).tolist()
        assert nnz == [7, 7] if expected else min(nnz) > 7


def test_learning_curves_are_read_in_step_order_and_plotted(tmp_path):
    from sprig.eval.bench.train_plot import curves, main

    curve = [{"step": 100, "loss": 3.0, "dev_ndcg10": 0.2}, {"step": 0, "dev_ndcg10": 0.1}, {"step": 50, "loss": 3.5}]
    report = {"rows": {"decoder-s0": {"training": {"curve": curve}}, "bm25": {"scifact": {}}}}
    assert curves(report) == {"decoder-s0": [(0, 0.1), (100, 0.2)]}  # points without a dev score and untrained rows left out
    (tmp_path / "r.json").write_text(json.dumps(report))
    assert main(["--out", str(tmp_path / "c.png"), f"run a=b={tmp_path / 'r.json'}"]) == 0
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_score_counts_postings_and_measures_the_index():
    from types import SimpleNamespace

    from sprig.encoders.factory import make_encoder
    from sprig.eval.bench.train_sparse import score, sparse_index_bytes

    texts = ["red apples and pears", "green pears", "blue sky over the sea", "apples fall"]
    encoder = make_encoder("bm25", SprigConfig())
    encoder.fit(texts)
    test = SimpleNamespace(queries=["apples"], qids=["q"], doc_ids=["a", "b", "c", "d"], qrels={"q": {"a": 1, "d": 1}})
    doc_vecs = encoder.encode_documents(texts)
    row = score(test, encoder, doc_vecs)
    assert row["nDCG@10"] == 1.0 and row["postings_per_query"] == 2 and row["nnz_query"] == 1
    assert sparse_index_bytes(doc_vecs, encoder.vocab_size) > 0


def test_centred_head_is_minus_the_mean_max_logit_and_travels_with_the_adapter(tmp_path):
    from sprig.encoders.decoder_splade import DecoderSpladeEncoder
    from sprig.train.students import make_student

    base = _tiny_llama(tmp_path / "base", 32)
    texts = ["Coffee lowers the risk of type 2 diabetes.", "Smoking causes lung cancer.", "Statins lower cholesterol.", "Sleep and obesity."]
    config = TrainConfig(student="decoder", init=str(base), doc_max_length=16, query_max_length=16, lora_rank=4,
                         lora_targets=["q_proj"], head_centring_docs=2)
    student = make_student(config, "cpu", texts)
    encoder = student.encoder
    sample = texts[::2]  # two of the four, spread evenly
    maxima = []
    for text in sample:  # the definition, one text at a time from the full logits of its last copy
        prompts = encoder.template.batch(encoder.tokenizer, [text], 16, "cpu")
        hidden = encoder.lm.body(input_ids=prompts.input_ids, attention_mask=prompts.attention_mask).last_hidden_state
        maxima.append((hidden[prompts.last_copy] @ encoder.weight.T).amax(0))
    assert torch.allclose(encoder.bias, -torch.stack(maxima).mean(0), atol=1e-4)
    student.train(False)
    centred = encoder.pooled(texts, 16)
    student.save(tmp_path / "adapter")
    loaded = DecoderSpladeEncoder(SpladeConfig(backbone="causal", adapter=str(tmp_path / "adapter"), doc_top_k=0, query_top_k=0), "cpu")
    assert torch.allclose(loaded.pooled(texts, 16), centred, atol=1e-4)  # the index encodes with the trained bias

    with pytest.raises(SprigError, match="needs --student decoder"):
        make_student(TrainConfig(student="siamese", head_centring_docs=2), "cpu", texts)


def test_an_adapter_trained_without_expansion_encodes_own_ids_when_loaded(tmp_path):
    from sprig.encoders.decoder_splade import DecoderSpladeEncoder
    from sprig.train.students import make_student

    base = _tiny_llama(tmp_path / "base", 32)
    texts = ["Coffee lowers the risk of type 2 diabetes.", "Smoking causes lung cancer."]
    config = TrainConfig(student="decoder", init=str(base), doc_max_length=16, query_max_length=16, lora_rank=4,
                         lora_targets=["q_proj"], expansion=False)
    student = make_student(config, "cpu", texts)
    student.doc_weights(texts).sum().backward()  # the own ids' weights reach the LoRA matrices
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    student.train(False)
    trained = student.encoder.pooled(texts, 16)
    own = [set(student.encoder.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert all(set(row.nonzero().flatten().tolist()) <= ids for row, ids in zip(trained, own))
    student.save(tmp_path / "adapter")
    loaded = DecoderSpladeEncoder(SpladeConfig(backbone="causal", adapter=str(tmp_path / "adapter")), "cpu")
    assert loaded.expansion is False and loaded.settings()["expansion"] is False
    assert (loaded.doc_top_k, loaded.query_top_k) == (0, 0)
    assert torch.allclose(loaded.pooled(texts, 16), trained, atol=1e-4)
    with pytest.raises(SprigError, match="expansion=false restricts a causal LM's head: it needs --student decoder"):
        make_student(TrainConfig(student="siamese", expansion=False), "cpu", texts)
