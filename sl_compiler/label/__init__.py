"""Labelling: teacher inference (single or ensemble), temperature, top-k and augmented views.

``Ensemble`` runs every teacher on each batch in float32; ``teacher_logits`` and
``teacher_labels`` make one pass over a set of images with it (logits, or stored-form soft labels
batch by batch); ``soft_labels`` turns logits into labels, and ``views`` samples and replays
augmented views (shared with the student trainer). ``LabelPieces`` keeps a compile's finished
label batches (``label_spans``) so that a killed run resumes from them. ``bptt`` learns labels
without a teacher (imported by itself: it is the only part that trains).
"""

from .pieces import LabelPieces
from .soft import check_topk, label_spans, soft_labels, stored_form, stored_labels, teacher_labels
from .teacher import PRECISION, Ensemble, full_precision, run_teachers, teacher_logits
from .views import AugmentedViews, gather, replay, sample_views

__all__ = [
    "PRECISION",
    "AugmentedViews",
    "Ensemble",
    "LabelPieces",
    "check_topk",
    "full_precision",
    "gather",
    "label_spans",
    "replay",
    "run_teachers",
    "sample_views",
    "soft_labels",
    "stored_form",
    "stored_labels",
    "teacher_labels",
    "teacher_logits",
]
