"""Labelling: teacher inference (single or ensemble), temperature, top-k and augmented views.

``Ensemble`` runs every teacher on each batch in float32; ``teacher_logits`` and
``teacher_labels`` make one pass over a set of images with it (logits, or stored-form soft labels
batch by batch); ``soft_labels`` turns logits into labels, and ``views`` samples and replays
augmented views (shared with the student trainer).
"""

from .soft import check_topk, soft_labels, stored_form, teacher_labels
from .teacher import PRECISION, Ensemble, full_precision, run_teachers, teacher_logits
from .views import AugmentedViews, gather, replay, sample_views

__all__ = [
    "PRECISION",
    "AugmentedViews",
    "Ensemble",
    "check_topk",
    "full_precision",
    "gather",
    "replay",
    "run_teachers",
    "sample_views",
    "soft_labels",
    "stored_form",
    "teacher_labels",
    "teacher_logits",
]
