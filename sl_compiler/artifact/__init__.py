"""The versioned artifact, format 1: WebDataset shards of images plus safetensors soft labels.

The spec is docs/artifact-format.md. Compile and the importers call :func:`write_artifact`;
evaluate calls :func:`load`; ``slc verify``, ``slc inspect`` and ``slc diff`` call :func:`verify`,
:func:`inspect_artifact` and :func:`diff_artifacts`. This package reads local folders only:
``hf://OWNER/NAME@REV`` is resolved above it, by ``sl_compiler.hub.open_artifact``.

    write_artifact(out, *, name, version, dataset, images, targets, source_ids, labels,
                   label_schema=None, recipe=None, teachers=(), selection=None, provenance=None,
                   license=None, ipc=None, shard_bytes=256 MiB, shard_samples=None, force=False, grid=True) -> Path
    load(path, verify=False) -> Artifact
    verify(path, allow_links=False) -> VerifyReport   # raises VerifyError naming the first bad file
    inspect_artifact(path) -> dict                    # summary_table(dict) -> str
    inspect.write_grid(path, out, per_class=None, max_classes=10, views=2)   # grid.png's drawing (grid.py)
    diff_artifacts(a, b, tolerance_ulps=0) -> DiffReport
"""

from .diff import DiffReport, diff_artifacts
from .format import FORMAT, artifact_dirname, dense_from_topk
from .inspect import inspect_artifact, summary_table
from .reader import Artifact, load
from .verify import VerifyReport, verify
from .writer import write_artifact

__all__ = [
    "FORMAT",
    "Artifact",
    "DiffReport",
    "VerifyReport",
    "artifact_dirname",
    "dense_from_topk",
    "diff_artifacts",
    "inspect_artifact",
    "load",
    "summary_table",
    "verify",
    "write_artifact",
]
