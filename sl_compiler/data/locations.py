"""Where datasets live on this machine: named once, found by every command and library call.

A dataset's root is, in order of precedence:

1. ``--data-root`` (``load_dataset(name, root=...)``);
2. the environment: ``SLC_DATA_<NAME>=PATH`` (``SLC_DATA_CIFAR10``, ``SLC_DATA_FASHION_MNIST``),
   then ``SLC_DATA=name=PATH,name=PATH`` (for CI);
3. the user's config file, ``$XDG_CONFIG_HOME/slc/datasets.toml`` (default
   ``~/.config/slc/datasets.toml``), written by ``slc data add NAME PATH``;
4. a system default, where a package installs the dataset (Debian's ``dataset-fashion-mnist``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .registry import DatasetEntry, entries, normal, root_entry

ENV_ALL = "SLC_DATA"
HEADER = "# Dataset locations for slc, written by `slc data add NAME PATH` (and `slc data remove NAME`).\n"


def config_path() -> Path:
    """``$XDG_CONFIG_HOME/slc/datasets.toml``, default ``~/.config/slc/datasets.toml``."""
    base = os.environ.get("XDG_CONFIG_HOME") or "~/.config"
    return Path(base).expanduser() / "slc" / "datasets.toml"


def env_name(name: str) -> str:
    """``fashion_mnist`` -> ``SLC_DATA_FASHION_MNIST``."""
    return f"{ENV_ALL}_{normal(name).upper()}"


def read_config(path: Path | None = None) -> dict[str, str]:
    """The ``[datasets]`` table of the config file ({} when there is none)."""
    from ..tomlfile import tomllib

    path = path or config_path()
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"dataset locations file {path} is not valid TOML ({exc})", "fix it, or delete it and add the locations again with slc data add") from None
    table = data.get("datasets", {})
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise DataError(f"{path}: [datasets] must map names to path strings", "fix it, or delete it and add the locations again with slc data add")
    return {normal(k): v for k, v in table.items()}


def parse_env_all(value: str) -> dict[str, str]:
    """``SLC_DATA=cifar10=/data/c10,imagenet=/data/in1k`` -> {name: path}."""
    out = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        name, eq, path = part.partition("=")
        if not eq or not name.strip() or not path.strip():
            raise DataError(f"{ENV_ALL}={value!r}: {part!r} is not name=PATH", f"write {ENV_ALL}=name=PATH,name=PATH")
        out[normal(name)] = path.strip()
    return out


@dataclass
class Location:
    """A dataset's root and where that came from (``--data-root``, an environment variable, the config file, the system)."""

    name: str
    path: Path | None
    origin: str | None

    @property
    def exists(self) -> bool:
        return self.path is not None and self.path.exists()


def locate(entry: DatasetEntry, root: str | Path | None = None) -> Location:
    """``entry``'s location by the precedence above; ``path`` None when none is set."""
    if root is not None:
        return Location(entry.name, Path(root).expanduser(), "--data-root")
    specific = env_name(entry.name)
    if os.environ.get(specific):
        return Location(entry.name, Path(os.environ[specific]).expanduser(), specific)
    shared = parse_env_all(os.environ.get(ENV_ALL, ""))
    if entry.name in shared:
        return Location(entry.name, Path(shared[entry.name]).expanduser(), ENV_ALL)
    configured = read_config()
    if entry.name in configured:
        return Location(entry.name, Path(configured[entry.name]).expanduser(), str(config_path()))
    if entry.default_root and Path(entry.default_root).is_dir():
        return Location(entry.name, Path(entry.default_root), "system default")
    return Location(entry.name, None, None)


def recorded_root(name: str) -> Path | None:
    """The existing recorded location (environment, config, system) of a registered dataset ``name``, else None."""
    from .registry import lookup

    try:
        entry = lookup(name)[0]
    except DataError:
        return None
    where = locate(entry) if entry.kind == "root" else None
    return where.path if where is not None and where.exists else None


def ways_to_set(name: str) -> str:
    """The fix every 'no location' error gives."""
    return f"pass --data-root PATH, run `slc data add {name} PATH` once, or set {env_name(name)}=PATH (or {ENV_ALL}={name}=PATH)"


def resolve_root(entry: DatasetEntry, root: str | Path | None = None) -> Path:
    """The existing root of ``entry``, or a :class:`DataError` that names every way to give one."""
    where = locate(entry, root)
    if where.path is None:
        raise DataError(f"dataset {entry.name!r} needs --data-root: no location is set for it", ways_to_set(entry.name))
    if not where.path.exists():
        raise DataError(f"data root {where.path} (from {where.origin}) does not exist", f"point it at the folder that holds {entry.name}: {ways_to_set(entry.name)}")
    return where.path


def _write_config(table: dict[str, str]) -> Path:
    """Write the config file atomically (temp file in its folder, then rename)."""
    import tomli_w

    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    text = HEADER + tomli_w.dumps({"datasets": dict(sorted(table.items()))})
    fd, tmp = tempfile.mkstemp(prefix=".datasets-", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def add_location(name: str, path: str | Path) -> tuple[str, Path]:
    """Record ``name``'s root (an existing folder or file, stored absolute); returns (name, path)."""
    entry = root_entry(name)
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"{root} does not exist", f"pass the folder that holds {entry.name}'s files")
    root = root.resolve()
    table = read_config()
    table[entry.name] = str(root)
    _write_config(table)
    return entry.name, root


def remove_location(name: str) -> str:
    """Forget ``name``'s recorded root; returns the path it had."""
    key = normal(name)
    table = read_config()
    if key not in table:
        held = ", ".join(sorted(table)) or "none"
        raise DataError(f"no location is recorded for {name!r} in {config_path()}", f"recorded: {held}")
    old = table.pop(key)
    _write_config(table)
    return old


def locations() -> list[Location]:
    """Every dataset that lives at a location, with its current root (or None)."""
    return [locate(e) for e in entries("root")]


def summary() -> list[dict]:
    """Per dataset with a location: name, path, where it was set, whether it exists, the layout found there."""
    rows = []
    for entry in entries("root"):
        where = locate(entry)
        layout = None
        if where.exists:
            try:
                layout = entry.describe_layout(where.path)
            except (DataError, OSError) as exc:
                layout = f"unreadable: {getattr(exc, 'problem', exc)}"
        rows.append({
            "name": entry.name,
            "path": str(where.path) if where.path else None,
            "origin": where.origin,
            "exists": where.exists,
            "layout": layout if where.exists else None,
        })
    return rows


def table(rows: list[dict]) -> str:
    """``slc data list``'s fixed-width table."""
    header = ["dataset", "path", "exists", "from", "layout"]
    lines = [
        [r["name"], r["path"] or "-", ("yes" if r["exists"] else "NO") if r["path"] else "-", r["origin"] or "-", r["layout"] or ("-" if not r["exists"] else "no known layout")]
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    fmt = lambda row: "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, lines)])
