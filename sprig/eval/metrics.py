"""Retrieval metrics through ir_measures (pytrec_eval), averaged the way `trec_eval -c` does:
over every judged query, a query the system returned nothing for counting as zero."""
from __future__ import annotations

import ir_measures
from ir_measures import RR, R, nDCG

from sprig.eval.runs import Run

MEASURES = {"nDCG@10": nDCG @ 10, "R@100": R @ 100, "R@1000": R @ 1000, "MRR@10": RR @ 10}


def evaluate(run: Run, qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    judged = [q for q, docs in qrels.items() if any(rel > 0 for rel in docs.values())]
    totals = dict.fromkeys(MEASURES, 0.0)
    by_measure = {m: name for name, m in MEASURES.items()}
    for metric in ir_measures.iter_calc(list(MEASURES.values()), qrels, {q: run[q] for q in judged if run.get(q)}):
        totals[by_measure[metric.measure]] += metric.value
    return {name: (total / len(judged) if judged else 0.0) for name, total in totals.items()}
