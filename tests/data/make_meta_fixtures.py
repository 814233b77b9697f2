"""Write the meta.mat fixtures with scipy, which slc itself does not need: ``python make_meta_fixtures.py`` (in tests/data)."""

import numpy as np
import scipy.io as sio

FIELDS = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height", "num_train_images"]
synsets = np.zeros((5, 1), dtype=[(f, "O") for f in FIELDS])
for i in range(5):
    leaf = i < 3
    synsets[i, 0] = (
        np.array([[i + 1]], dtype=np.float64),
        f"n0{i}44076{i}",
        f"tench, Tinca tinca {i} é",
        "a fish",
        np.array([[0 if leaf else 2]], dtype=np.float64),
        np.zeros((1, 0)) if leaf else np.array([[1.0, 2.0]]),
        np.array([[0.0]]),
        np.array([[1300.0 - i]]),
    )
sio.savemat("meta-scipy-plain.mat", {"synsets": synsets}, do_compression=False)
sio.savemat("meta-scipy-compressed.mat", {"synsets": synsets}, do_compression=True)
