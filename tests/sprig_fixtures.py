"""A tiny corpus and index builder shared by the index, searcher and server tests."""
from __future__ import annotations

import json
from pathlib import Path

from sprig.core.config import SprigConfig

TOPICS = [
    ("Vitamin D", "Vitamin D deficiency lowers bone mineral density in older adults."),
    ("Statins", "Statin therapy reduces LDL cholesterol and cardiovascular events."),
    ("Malaria", "Artemisinin combination therapy cures uncomplicated falciparum malaria."),
    ("Sleep", "Short sleep duration is associated with obesity in children."),
    ("Aspirin", "Low dose aspirin prevents recurrent stroke after transient ischemic attack."),
    ("Coffee", "Coffee consumption is linked with a lower risk of type 2 diabetes."),
    ("Exercise", "Aerobic exercise improves memory and hippocampal volume."),
    ("Smoking", "Tobacco smoking causes most cases of lung cancer."),
    ("Antibiotics", "Overuse of antibiotics drives bacterial resistance in hospitals."),
    ("Zinc", "Zinc lozenges may shorten the duration of the common cold."),
    ("Folate", "Folic acid before conception prevents neural tube defects."),
    ("Insulin", "Insulin resistance precedes type 2 diabetes by many years."),
]


def write_corpus(path: Path) -> Path:
    with path.open("w") as fh:
        for i, (title, text) in enumerate(TOPICS):
            fh.write(json.dumps({"_id": f"d{i}", "title": title, "text": text}) + "\n")
    return path


def tiny_config(**index) -> SprigConfig:
    """Short SPLADE inputs and small shards keep the build fast and multi-shard; sentence vectors on (off by
    default), so builds, resumes and faults cover every part an index can hold."""
    return SprigConfig(device="cpu", splade={"doc_max_length": 64, "batch_size": 8},
                       index={"shard_size": 5, "sentence_vectors": True, **index})
