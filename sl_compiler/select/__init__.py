"""Which images: random per class (seeded) or by the teacher's cross-entropy quantile.

Every strategy returns dataset indices grouped by class (class 0 first), ascending within a
class: the artifact's sample order.
"""

from .ce_quantile import SCORE_CHUNK, Scores, ce_scores, check_decile, parts_dir, quantile_per_class, score_chunks, scores_path
from .random import check_ipc, draw_per_class, per_class_ranks, random_per_class

__all__ = [
    "SCORE_CHUNK",
    "Scores",
    "ce_scores",
    "check_decile",
    "check_ipc",
    "draw_per_class",
    "parts_dir",
    "per_class_ranks",
    "quantile_per_class",
    "random_per_class",
    "score_chunks",
    "scores_path",
]
