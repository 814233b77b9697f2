"""Run every benchmark in benchmarks/ and write one table of their figures into benchmarks/README.md.

    .venv/bin/python benchmarks/run_all.py            # each script with --quick (minutes on 2 cores)
    .venv/bin/python benchmarks/run_all.py --full     # each script's full settings (hours on a CPU)
    .venv/bin/python benchmarks/run_all.py --no-run   # rebuild the table from benchmarks/results/*.json
    .venv/bin/python benchmarks/run_all.py --only storage,eval_throughput

Each script writes benchmarks/results/<name>.json. A result names its figures in a top-level
``figures`` list of ``{"name", "value", "unit", "target"}`` (``target`` a string such as ">= 0.9",
or null); a result without one contributes its top-level ratios (keys ending in ``ratio``, with a
sibling ``target``). The table goes between the markers below in benchmarks/README.md, with the
machine, the torch version, the date and the command, and per benchmark the settings it ran with:
its result's ``settings`` (a dict or text), else the ``command`` it recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"
BEGIN, END = "<!-- run_all:begin -->", "<!-- run_all:end -->"


def discover(folder: Path = HERE) -> list[Path]:
    """Every benchmark script in ``folder`` except this one and private helpers, in name order."""
    return sorted(p for p in folder.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_"))


def accepts_quick(script: Path) -> bool:
    """Whether a script declares a ``--quick`` flag (read from its source; nothing is imported)."""
    return re.search(r"""["']--quick["']""", script.read_text()) is not None


def run_script(script: Path, quick: bool, timeout: float | None, cwd: Path = HERE.parent) -> dict:
    """Run one benchmark as a subprocess from ``cwd`` (the repository root); return its status and wall time."""
    shown = script.relative_to(cwd) if script.is_relative_to(cwd) else script
    cmd = [sys.executable, str(shown)]
    if quick and accepts_quick(script):
        cmd.append("--quick")
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=cwd, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        status = f"timed out after {timeout:.0f} s"
    return {"script": script.name, "command": " ".join(cmd[1:]), "status": status, "wall_s": round(time.perf_counter() - started, 1)}


def figures(result: dict) -> list[dict]:
    """The figures a result JSON reports: its ``figures`` list, else its top-level ratios with targets."""
    if isinstance(result.get("figures"), list):
        return [f for f in result["figures"] if isinstance(f, dict) and "name" in f and "value" in f]
    found = []
    for key, value in sorted(result.items()):
        if key.endswith("ratio") and isinstance(value, (int, float)) and not isinstance(value, bool):
            target = result.get(f"{key}_target", result.get("target"))
            found.append({"name": key, "value": value, "unit": "x", "target": target})
    return found


def meets(value, target) -> str:
    """'yes'/'no' for a target written as '>= 0.9', '<= 5', '> 2' or '< 1'; '' when there is none."""
    if target is None or not isinstance(value, (int, float)):
        return ""
    if isinstance(target, (int, float)):
        target = f">= {target}"
    match = re.fullmatch(r"\s*(>=|<=|>|<)\s*(-?[0-9.eE+-]+)\s*\S*\s*", str(target))
    if not match:
        return ""
    op, bound = match.group(1), float(match.group(2))
    ok = {">=": value >= bound, "<=": value <= bound, ">": value > bound, "<": value < bound}[op]
    return "yes" if ok else "no"


def format_value(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def settings_of(result: dict, run: dict | None = None) -> str:
    """How a result was made: its ``settings`` (a dict or text), else the ``command`` it recorded,
    else the command this run used; "not recorded" when none says."""
    recorded = result.get("settings")
    if isinstance(recorded, dict) and recorded:
        text = ", ".join(f"{k}={json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v}" for k, v in sorted(recorded.items()))
    elif isinstance(recorded, str) and recorded.strip():
        text = recorded.strip()
    elif result.get("command") or (run or {}).get("command"):
        command = str(result.get("command") or f"python {run['command']}").strip()
        text = f"`{command}`"
    else:
        text = "not recorded"
    if result.get("machine"):
        text += f"; on {result['machine']}"
    return text.replace("|", "\\|").replace("\n", " ")


def table(results: dict[str, dict], runs: dict[str, dict] | None = None) -> str:
    """One markdown table: benchmark, the settings it ran with, figure, value, unit, target, met; plus failed runs."""
    runs = runs or {}
    lines = ["| benchmark | settings | figure | value | unit | target | met |", "|---|---|---|---:|---|---|---|"]
    for name, result in sorted(results.items()):
        settings = settings_of(result, runs.get(name))
        for i, fig in enumerate(figures(result)):
            target = fig.get("target")
            lines.append(
                f"| {name} | {settings if i == 0 else ''} | {fig['name']} | {format_value(fig['value'])} | {fig.get('unit') or ''} | "
                f"{'' if target is None else target} | {meets(fig['value'], target)} |"
            )
    for name, run in sorted(runs.items()):
        if run["status"] != "ok":
            lines.append(f"| {name} | `python {run['command']}` | run | {run['status']} | | | no |")
    return "\n".join(lines)


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    import torch

    cpu = f"{os.cpu_count()} CPU cores ({platform.machine()}, {cpu_name()})"
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return cpu + gpu


def report(results: dict[str, dict], runs: dict[str, dict], command: str) -> str:
    """The README section: provenance lines, then the table."""
    import torch

    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    where = f"Machine: {machine()}; torch {torch.__version__}; {when}."
    if not runs:  # nothing ran here: the figures were measured wherever their result files say
        where = f"Rebuilt from benchmarks/results/*.json on {when} ({machine()}, torch {torch.__version__}); each row's settings say how its result was made, and where when it recorded a machine."
    head = [where, f"Command: `{command}`" + (" (each script with --quick where it has one)" if "--full" not in command and runs else "")]
    for name, run in sorted(runs.items()):
        head.append(f"- `{run['command']}`: {run['status']}, {run['wall_s']:.0f} s")
    return "\n".join(head) + "\n\n" + table(results, runs) + "\n"


def load_results(folder: Path = RESULTS) -> dict[str, dict]:
    out = {}
    for path in sorted(folder.glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            out[path.stem] = {"figures": [{"name": "result file", "value": f"unreadable ({exc.msg})", "target": None}]}
    return out


def update_readme(section: str, readme: Path = README) -> None:
    """Replace the text between the markers (appending them when absent); write atomically."""
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{section}{END}"
    if BEGIN in text and END in text:
        start, end = text.index(BEGIN), text.index(END) + len(END)
        text = text[:start] + block + text[end:]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = readme.with_name(readme.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(readme)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="run each script with its full settings (no --quick)")
    parser.add_argument("--no-run", action="store_true", help="only rebuild the table from benchmarks/results/*.json")
    parser.add_argument("--only", default="", help="comma-separated script names (without .py) to run")
    parser.add_argument("--timeout", type=float, default=None, help="seconds allowed per script")
    args = parser.parse_args(argv)

    scripts = discover()
    if args.only:
        wanted = {n.strip().removesuffix(".py") for n in args.only.split(",") if n.strip()}
        unknown = wanted - {s.stem for s in scripts}
        if unknown:
            parser.error(f"no benchmark named {', '.join(sorted(unknown))}; have {', '.join(s.stem for s in scripts)}")
        scripts = [s for s in scripts if s.stem in wanted]
    runs = {}
    if not args.no_run:
        for script in scripts:
            print(f"== {script.name}", flush=True)
            runs[script.stem] = run_script(script, quick=not args.full, timeout=args.timeout)
    command = "python benchmarks/run_all.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    section = report(load_results(RESULTS), runs, command)
    update_readme(section, README)
    print(section)
    return 0 if all(r["status"] == "ok" for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
