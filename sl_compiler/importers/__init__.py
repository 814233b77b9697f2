"""Third-party distilled sets into artifacts that evaluate like ours (``slc import FORMAT ...``).

Formats: ``mtt`` (MTT/TESLA/DATM tensors, hard or soft labels, optional learned lr), ``dc``
(DC/DSA/DM ``res_*.pt``), ``tensor`` (a plain (N, C, H, W) tensor and labels, DD-Ranking's input),
``imagefolder`` (SRe2L/RDED images labelled by a teacher reference) and ``h5`` (RaT-BPTT, needs
h5py). Tensors load with ``weights_only=True`` only; normalised images are de-normalised with the
stated mean and std, quantised to uint8 (error <= 0.5/255 inside [0, 1], clipping recorded), and
the manifest's provenance names every file read by sha256.
"""

from .common import Target, interpret_labels, target_dataset, to_uint8
from .dc import import_dc
from .h5 import h5_arrays, import_h5
from .imagefolder import import_imagefolder
from .parquet import import_parquet
from .tensors import import_mtt, import_tensor

FORMATS = {"mtt": import_mtt, "dc": import_dc, "tensor": import_tensor, "imagefolder": import_imagefolder, "h5": import_h5, "parquet": import_parquet}

__all__ = [
    "FORMATS",
    "Target",
    "h5_arrays",
    "import_dc",
    "import_h5",
    "import_imagefolder",
    "import_mtt",
    "import_parquet",
    "import_tensor",
    "interpret_labels",
    "target_dataset",
    "to_uint8",
]
