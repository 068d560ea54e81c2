"""The training loop: AdamW on the student's trainable weights, dev nDCG@10 before the first step and every
``eval_every`` steps, the best evaluation's weights kept (the untrained student's, when training never helps).

One step: B queries with 1 + n candidates each (sprig.train.examples). The student scores every query against
every document of the batch; the scores are multiplied by the score scale (see ``score_scale``), and the loss is
InfoNCE + distill_weight x KL (when ``distill``) + the FLOPS terms (documents always, queries for students that encode
them), their weights ramped in quadratically (losses.py).
"""
from __future__ import annotations

import itertools
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from sprig.core.config import TrainConfig
from sprig.train.dev import DevSet
from sprig.train.examples import Batch, TrainingQuery, batches, steps_for
from sprig.train.losses import flops, flops_ramp, idf_penalty, info_nce, kl_distill
from sprig.train.students import SiameseStudent

log = logging.getLogger(__name__)


@dataclass
class Trained:
    """The learning curve (step 0: the untrained student; then one point per dev evaluation) and the step whose
    weights the student holds now; ``steps`` were run of ``planned_steps`` (fewer when ``time_limit_s`` stopped it)."""

    curve: list[dict] = field(default_factory=list)
    best_step: int = 0
    best_dev_ndcg10: float = -math.inf
    steps: int = 0
    planned_steps: int = 0
    score_scale: float = 1.0
    seconds: float = 0.0


def batch_scores(student: SiameseStudent, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(document weights [B(1 + n), V], query weights [B, V], raw scores [B, B(1 + n)]) of one batch."""
    docs = student.doc_weights(batch.docs)
    queries = student.query_weights(batch.queries)
    return docs, queries, queries.float() @ docs.float().T


def score_scale(student: SiameseStudent, batch: Batch, config: TrainConfig) -> float:
    """The factor on the scores: as set, or ("auto") 1 / the mean within-query standard deviation of the untrained
    student's scores on ``batch``, so InfoNCE and KL start from logits of spread 1 (O(1-10) losses) whatever the
    backbone's scale. A softmax ignores a row's offset, so only the spread within a row matters."""
    setting = student.score_scale if config.score_scale is None else config.score_scale
    if setting != "auto":
        return float(setting)
    with torch.no_grad():
        spread = float(batch_scores(student, batch)[2].std(dim=1).mean())
    return 1.0 / max(spread, 1e-6)


def step_losses(student: SiameseStudent, batch: Batch, config: TrainConfig, penalty: torch.Tensor | None, ramp: float,
                scale: float = 1.0) -> tuple[dict[str, torch.Tensor], float]:
    """The loss terms of one batch, and its documents' mean non-zeros before any top-k (the sparsity FLOPS buys)."""
    docs, queries, raw = batch_scores(student, batch)
    scores = raw * scale
    width = 1 + config.negatives
    rows = torch.arange(len(batch.queries), device=scores.device)
    parts = {"contrastive": info_nce(scores, rows * width), "flops_doc": ramp * config.flops_doc * flops(docs, penalty)}
    if config.distill:
        own = scores.view(len(rows), len(rows), width)[rows, rows]  # [B, 1 + n]: each query's own candidates
        teacher = torch.from_numpy(batch.teacher).to(scores.device)
        parts["distill"] = config.distill_weight * kl_distill(own, teacher, config.distill_temperature)
    if student.encodes_queries:
        parts["flops_query"] = ramp * config.flops_query * flops(queries, penalty)
    return parts, float((docs > 0).sum(dim=1).float().mean())


def train_student(student: SiameseStudent, queries: list[TrainingQuery], dev: DevSet, config: TrainConfig, progress: bool = True) -> Trained:
    """Train in place; the student ends with the weights of its best dev evaluation (step 0 included unless
    ``keep_untrained`` is off)."""
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    total = steps_for(len(queries), config)
    params = student.parameters()
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, total // 10, total)
    penalty = idf_penalty(student.idf, config.idf_floor).to(student.device) if config.flops == "idf" else None
    stream = batches(queries, config, rng)
    first = next(stream)
    result, running = Trained(planned_steps=total, score_scale=score_scale(student, first, config)), defaultdict(list)
    best_state = _record(result, {"step": 0, **evaluate(student, dev)}, student)
    if not config.keep_untrained:  # the curve keeps step 0; selection starts at the first trained evaluation
        result.best_step, result.best_dev_ndcg10, best_state = 0, -math.inf, None
    start = time.perf_counter()
    for step, batch in tqdm(zip(range(1, total + 1), itertools.chain([first], stream)), total=total, desc=f"train {config.student}",
                            unit="step", disable=not progress):
        parts, doc_nnz = step_losses(student, batch, config, penalty, flops_ramp(step, total, config.flops_warmup), result.score_scale)
        loss = sum(parts.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        for name, value in parts.items():
            running[name].append(value.item())
        running["loss"].append(loss.item())
        running["train_doc_nnz"].append(doc_nnz)
        out_of_time = bool(config.time_limit_s) and time.perf_counter() - start > config.time_limit_s
        if step % config.eval_every == 0 or step == total or out_of_time:
            point = {"step": step, **{k: round(float(np.mean(v)), 5) for k, v in running.items()}, **evaluate(student, dev)}
            running.clear()
            best_state = _record(result, point, student) or best_state
            result.steps = step
            if out_of_time:
                log.info("time limit of %.0f s reached at step %d of %d", config.time_limit_s, step, total)
                break
    student.load_state(best_state)
    result.seconds = round(time.perf_counter() - start, 1)
    return result


def _record(result: Trained, point: dict, student: SiameseStudent) -> dict[str, torch.Tensor] | None:
    """Adds ``point`` to the curve; the student's weights when it is the best dev score so far, else None."""
    result.curve.append(point)
    log.info("step %d: %s", point["step"], point)
    if point["dev_ndcg10"] <= result.best_dev_ndcg10:
        return None
    result.best_step, result.best_dev_ndcg10 = point["step"], point["dev_ndcg10"]
    return student.state()


def evaluate(student: SiameseStudent, dev: DevSet) -> dict:
    """The dev figures, with dropout off."""
    student.train(False)
    point = dev.evaluate(student)
    student.train(True)
    return point
