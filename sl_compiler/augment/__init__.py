"""Batched augmentation on image tensors, every random choice drawn from a generator or from :class:`Draws`.

One module per family: ``basic`` (crop with padding, horizontal flip: expert training),
``dsa``, ``cutmix`` and ``rrc`` (student training), ``pipeline`` (a student's named pipeline of
them) and ``rng`` (counter-based random numbers for many students at once).
"""

from .cutmix import cutmix
from .dsa import DSA, DSAParams
from .pipeline import Augment
from .rng import Draws, TorchRandom
from .rrc import random_resized_crop

__all__ = ["Augment", "DSA", "DSAParams", "Draws", "TorchRandom", "cutmix", "random_resized_crop"]
