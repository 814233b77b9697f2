"""The command line itself: fast help that never imports torch, an example in every command's help,
every flag explained with its default."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from cli.main import COMMANDS, cli, main

PROBE = """
import sys
from cli.main import main
code = main({argv!r})
heavy = sorted(m for m in ("torch", "numpy", "huggingface_hub", "safetensors", "PIL") if m in sys.modules)
slc_modules = sorted(m for m in sys.modules if m.startswith(("cli.", "sl_compiler.")))
print("HEAVY", heavy)
print("SLC", slc_modules)
sys.exit(code)
"""


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["-h"]])
def test_help_and_version_never_import_torch_or_a_command_module(argv):
    proc = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line.startswith(("HEAVY", "SLC")))
    assert lines["HEAVY"] == "[]"
    assert lines["SLC"] == "['cli.main', 'sl_compiler.dist', 'sl_compiler.errors']"  # dist: the torchrun guard, torch-free
    if argv == ["--version"]:
        assert proc.stdout.startswith("slc, version ")
    else:
        for name, (_, _, summary) in COMMANDS.items():
            assert f"  {name}  " in proc.stdout and summary[:40] in " ".join(proc.stdout.split())


def _commands(group: click.Group, path: list[str]):
    for name in group.list_commands(None):
        cmd = group.get_command(None, name)
        assert isinstance(cmd, click.Command), name
        yield path + [name], cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, path + [name])


ALL = list(_commands(cli, ["slc"]))


def test_every_declared_command_resolves_to_its_module_and_name():
    assert {p[1] for p, _ in ALL} == set(COMMANDS)
    for path, cmd in ALL:
        if len(path) == 2:
            assert cmd.name == path[1]
    assert cli.get_command(None, "nope") is None
    assert main(["nope"]) == 2


@pytest.mark.parametrize("path, cmd", ALL, ids=[" ".join(p) for p, _ in ALL])
def test_every_command_shows_an_example_and_explains_every_flag(path, cmd, capsys):
    assert main([*path[1:], "--help"]) == 0
    text = capsys.readouterr().out
    assert "Examples:" in text, f"{' '.join(path)} --help shows no example"
    examples = text[text.index("Examples:") :].splitlines()[1:]
    assert any(line.strip().startswith(" ".join(path)) for line in examples), examples  # the \b kept the lines
    for param in cmd.params:
        if not isinstance(param, click.Option) or param.name == "help":
            continue
        help_text = (param.help or "").lower()
        assert help_text, f"{' '.join(path)} {param.opts[0]} has no help"
        says_default = param.is_flag or param.required or param.show_default or "default" in help_text or "required" in help_text
        assert says_default, f"{' '.join(path)} {param.opts[0]}: the help does not say the default"
