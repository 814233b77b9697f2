"""Entry point of ``slc``: one group, one module per command family, one error policy."""

from __future__ import annotations

import importlib
import sys

import click

from sl_compiler import __version__
from sl_compiler.errors import SlcError

# (module in cli/, attribute): each attribute is a click command or group
COMMANDS = [
    ("demo", "demo"),
    ("experts", "experts"),
    ("compile", "compile_cmd"),
    ("artifact", "inspect_cmd"),
    ("artifact", "verify_cmd"),
    ("evaluate", "evaluate_cmd"),
    ("evaluate", "report_cmd"),
    ("importers", "import_cmd"),
    ("hub", "publish_cmd"),
    ("hub", "pull_cmd"),
    ("sweep", "sweep_cmd"),
    ("data", "data_cmd"),
]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="slc")
def cli():
    """slc, the soft-label dataset compiler.

    Compile a dataset into a few real images per class with expert soft labels, evaluate any
    distilled set by training students, and share artifacts on the Hugging Face Hub.
    """


for _module, _attr in COMMANDS:
    cli.add_command(getattr(importlib.import_module(f"cli.{_module}"), _attr))


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; an :class:`SlcError` becomes one ``error:`` line and its exit code."""
    try:
        cli.main(args=argv, prog_name="slc", standalone_mode=False)
    except SlcError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
