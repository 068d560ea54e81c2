"""The training objective: contrastive ranking, distillation from teacher scores, and FLOPS sparsity.

For a batch of B queries, each with its positive and n hard negatives (D = B(1 + n) documents in all), s_ij is
the student's score (dot product of SPLADE vectors) of query i and document j:

    InfoNCE       L_c = -1/B sum_i log( exp(s_{i,p(i)}) / sum_j exp(s_ij) ), j over all D documents (in-batch
                  negatives: the other queries' positives and negatives, plus query i's own hard negatives)
    KL distill    L_d = 1/B sum_i KL( softmax(t_i / tau) || softmax(s_i) ) over query i's own 1 + n candidates,
                  t_i the combined teacher scores (sprig.train.teachers: per-query min-max normalised, weighted mean)
    FLOPS         L_f = sum_k ( 1/N sum_r w_rk )^2 over the N vectors of one side (Paria et al. 2020, as in SPLADE)
    IDF-aware     L_f = sum_k phi_k ( 1/N sum_r w_rk )^2,  phi_k = 1 / max(idf_k / max_l idf_l, floor)

IDF-aware FLOPS (after Geng et al. 2024, "Towards Competitive Search Relevance For Inference-Free Learned Sparse
Retrievers"): a rare term (idf near the largest) is penalised as by plain FLOPS (phi = 1), a common one up to 1/floor
times more, so the document encoder drops the terms whose postings are long and whose IDF-weighted query matches
are worth little. idf is the corpus IDF of sprig.encoders.inference_free (BM25's formula, over tokenizer ids).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def info_nce(scores: torch.Tensor, positive_columns: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each query's positive column among all its [B, D] in-batch scores."""
    return F.cross_entropy(scores.float(), positive_columns)


def kl_distill(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) over each row's candidates, [B, C] scores, averaged over rows."""
    target = F.log_softmax(teacher.float() / temperature, dim=-1)
    return F.kl_div(F.log_softmax(student.float(), dim=-1), target, log_target=True, reduction="batchmean")


def flops(weights: torch.Tensor, term_penalty: torch.Tensor | None = None) -> torch.Tensor:
    """FLOPS of [N, V] non-negative weights; ``term_penalty`` [V] makes it IDF-aware (None: plain)."""
    mean_sq = weights.float().mean(dim=0) ** 2
    return (mean_sq if term_penalty is None else mean_sq * term_penalty).sum()


def idf_penalty(idf: np.ndarray, floor: float) -> torch.Tensor:
    """phi_k = 1 / max(idf_k / max idf, floor): 1 for the rarest terms, up to 1 / floor for the most common."""
    ratio = np.asarray(idf, np.float64) / max(float(np.max(idf)), 1e-12)
    return torch.from_numpy(1.0 / np.maximum(ratio, floor)).float()


def flops_ramp(step: int, total: int, warmup: float) -> float:
    """SPLADE's quadratic ramp of the FLOPS weight: (step / warm-up steps)^2, then 1."""
    ramp = warmup * total
    return 1.0 if ramp <= 0 else min(1.0, (step / ramp) ** 2)
