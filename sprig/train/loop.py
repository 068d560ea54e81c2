"""The training loop: AdamW on the student's trainable weights, dev nDCG@10 every ``eval_every`` steps, best kept.

One step: B queries with 1 + n candidates each (sprig.train.examples). The student scores every query against
every document of the batch; the loss is InfoNCE + distill_weight x KL (when ``distill``) + the FLOPS terms
(documents always, queries for students that encode them), their weights ramped in quadratically (losses.py).
"""
from __future__ import annotations

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
    """The learning curve (one point per dev evaluation) and the step whose weights the student holds now."""

    curve: list[dict] = field(default_factory=list)
    best_step: int = 0
    best_dev_ndcg10: float = -math.inf
    steps: int = 0
    seconds: float = 0.0


def step_losses(student: SiameseStudent, batch: Batch, config: TrainConfig, penalty: torch.Tensor | None, ramp: float) -> dict[str, torch.Tensor]:
    docs = student.doc_weights(batch.docs)  # [B(1 + n), V]
    queries = student.query_weights(batch.queries)  # [B, V]
    scores = queries.float() @ docs.float().T  # [B, B(1 + n)]
    width = 1 + config.negatives
    rows = torch.arange(len(batch.queries), device=scores.device)
    parts = {"contrastive": info_nce(scores, rows * width), "flops_doc": ramp * config.flops_doc * flops(docs, penalty)}
    if config.distill:
        own = scores.view(len(rows), len(rows), width)[rows, rows]  # [B, 1 + n]: each query's own candidates
        teacher = torch.from_numpy(batch.teacher).to(scores.device)
        parts["distill"] = config.distill_weight * kl_distill(own, teacher, config.distill_temperature)
    if student.encodes_queries:
        parts["flops_query"] = ramp * config.flops_query * flops(queries, penalty)
    return parts


def train_student(student: SiameseStudent, queries: list[TrainingQuery], dev: DevSet, config: TrainConfig, progress: bool = True) -> Trained:
    """Train in place; the student ends with the weights of its best dev evaluation."""
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    total = steps_for(len(queries), config)
    params = student.parameters()
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, total // 10, total)
    penalty = idf_penalty(student.idf, config.idf_floor).to(student.device) if config.flops == "idf" else None
    result, best_state, running = Trained(steps=total), None, defaultdict(list)
    stream, start = batches(queries, config, rng), time.perf_counter()
    for step in tqdm(range(1, total + 1), desc=f"train {config.student}", unit="step", disable=not progress):
        parts = step_losses(student, next(stream), config, penalty, flops_ramp(step, total, config.flops_warmup))
        loss = sum(parts.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        for name, value in parts.items():
            running[name].append(value.item())
        running["loss"].append(loss.item())
        if step % config.eval_every == 0 or step == total:
            point = {"step": step, **{k: round(float(np.mean(v)), 5) for k, v in running.items()}, **evaluate(student, dev)}
            result.curve.append(point)
            running.clear()
            log.info("step %d: %s", step, point)
            if point["dev_ndcg10"] > result.best_dev_ndcg10:
                result.best_step, result.best_dev_ndcg10, best_state = step, point["dev_ndcg10"], student.state()
    student.load_state(best_state)
    result.seconds = round(time.perf_counter() - start, 1)
    return result


def evaluate(student: SiameseStudent, dev: DevSet) -> dict:
    """The dev figures, with dropout off."""
    student.train(False)
    point = dev.evaluate(student)
    student.train(True)
    return point
