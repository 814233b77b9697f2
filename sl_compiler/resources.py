"""Where the shipped recipes live, from a source checkout and from an installed wheel.

A checkout (and the editable install the README uses) reads ``recipes/`` beside the package. A
wheel cannot put a top-level folder beside its packages, so it installs the same files as data
under ``<prefix>/share/slc/recipes`` (pyproject.toml's data-files), which is looked up second.
"""

from __future__ import annotations

import site
import sys
from pathlib import Path

SOURCE_RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def recipes_dir(subfolder: str = "") -> Path:
    """``recipes/<subfolder>`` of the checkout if there is one, else of the installed data files.

    When neither exists the checkout's path is returned, so that a caller's "no such recipe"
    error names the folder a user would look in.
    """
    prefixes = dict.fromkeys([sys.prefix, sys.base_prefix, site.getuserbase()])
    for root in [SOURCE_RECIPES] + [Path(p) / "share" / "slc" / "recipes" for p in prefixes]:
        if (root / subfolder).is_dir():
            return root / subfolder
    return SOURCE_RECIPES / subfolder
