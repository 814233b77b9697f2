"""The artifacts a report names, where they can be read here: manifest, label heat map, image grid.

A results row records the artifact's folder as ``slc evaluate`` was given it. The report looks for
it there (relative to the current folder) and beside the results file, and uses a folder only
when its manifest has the row's content hash: a folder that now holds other data is not shown
as this artifact. Nothing is downloaded; an artifact that cannot be read here is named with the
reason, and the page shows what the results themselves record.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from ..artifact import format as fmt
from ..artifact.manifest import card_record
from ..errors import SlcError


@dataclass
class LocalArtifact:
    """An artifact found on this machine: its folder and parsed manifest, opened on first use."""

    path: Path
    manifest: dict

    @functools.cached_property
    def artifact(self):
        from ..artifact import load

        return load(self.path)

    def grid(self) -> bytes:
        """grid.png as stored when its bytes match the manifest's record, else drawn now with the same defaults."""
        record = self.manifest.get("grid")
        file = self.path / fmt.GRID
        if record and file.is_file():
            data = file.read_bytes()
            if card_record(data) == record:
                return data
        from ..artifact.grid import grid_png, source_of_artifact

        return grid_png(source_of_artifact(self.artifact), self.manifest)


def find(row: dict, results_file: Path) -> tuple[LocalArtifact | None, str]:
    """(the artifact of a results row, "") or (None, why it cannot be read here)."""
    from ..artifact.reader import read_manifest

    recorded = row.get("path")
    if not isinstance(recorded, str) or not recorded or recorded.startswith("hf://"):
        return None, "the results record no local folder"
    candidates = [Path(recorded)]
    if not Path(recorded).is_absolute():
        candidates.append(results_file.parent / recorded)
    problems = []
    for folder in dict.fromkeys(candidates):
        if not (folder / fmt.MANIFEST).is_file():
            problems.append(f"no artifact at {folder}")
            continue
        try:
            manifest = read_manifest(folder)
        except SlcError as exc:
            problems.append(f"{folder}: {exc.problem}")
            continue
        if manifest["content_hash"] != row["content_hash"]:
            problems.append(f"{folder} now holds content hash {manifest['content_hash'][:8]}, not {row['content_hash'][:8]}")
            continue
        return LocalArtifact(folder, manifest), ""
    return None, "; ".join(problems)
