"""One training run end to end: data, cached teachers, student, loop, saved model and its training report."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from sprig.core.config import SprigConfig, resolve_device
from sprig.core.files import write_text_atomic
from sprig.train.datasets import load_judged
from sprig.train.dev import DevSet
from sprig.train.examples import training_queries
from sprig.train.loop import train_student
from sprig.train.students import make_student
from sprig.train.teachers import cached_teachers

log = logging.getLogger(__name__)

HOW_TO_LOAD = {
    "inference-free": "sprig index CORPUS --sparse inference-free with inference_free.model={model} (SPRIG_INFERENCE_FREE__MODEL); "
                      "its idf.json serves inference_free.query_weights=model",
    "siamese": "--splade-model {model}",
    "decoder": "--adapter {model} (the adapter records its base; --splade-model BASE names another copy of it)",
}


def run_training(config: SprigConfig, data_root: Path, teachers_dir: Path, out: Path, progress: bool = True) -> dict:
    """Train ``config.train.student``; writes OUT/model and OUT/training.json (settings, learning curve, best step)."""
    t = config.train
    sets = [load_judged(data_root, spec, "train.train_sets") for spec in t.train_sets]
    dev = DevSet(load_judged(data_root, t.dev_set, "train.dev_set"), t.dev_max_queries, t.dev_max_docs)
    device = resolve_device(config.device)
    queries = [q for judged in sets for q in training_queries(judged, cached_teachers(judged, teachers_dir, t, device), t)]
    student = make_student(t, device, (text for judged in sets for text in judged.docs.values()))
    log.info("training %s on %d queries (%s), selecting on %s (%d queries, %d documents)", t.student, len(queries),
             ", ".join(t.train_sets), dev.name, len(dev.qids), len(dev.texts))
    trained = train_student(student, queries, dev, t, progress)
    model = out / "model"
    student.save(model)
    report = {"student": t.student, "model": str(model), "load_with": HOW_TO_LOAD[t.student].format(model=model),
              "train_sets": t.train_sets, "training_queries": len(queries), "dev_set": dev.name, "dev_queries": len(dev.qids),
              "dev_docs": len(dev.texts), "device": device, "steps": trained.steps, "planned_steps": trained.planned_steps,
              "score_scale": trained.score_scale, "seconds": trained.seconds,
              "best_step": trained.best_step, "best_dev_ndcg10": trained.best_dev_ndcg10, "curve": trained.curve,
              "settings": t.model_dump()}
    write_text_atomic(out / "training.json", json.dumps(report, indent=1))
    return report
