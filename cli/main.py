"""Entry point of ``slc``: one group, one module per command family, one error policy.

Command modules are imported only when their command runs or shows its help: ``slc --help`` and
``slc --version`` never import torch (they cost a fraction of a second, not seconds). The
summaries ``slc --help`` prints are declared here for that reason.
"""

from __future__ import annotations

import importlib
import sys

import click

from sl_compiler import __version__
from sl_compiler.errors import SlcError

# name -> (module in cli/, attribute, the one-line summary `slc --help` shows)
COMMANDS = {
    "demo": ("demo", "demo", "Run the whole pipeline on built-in data: expert, compile, verify, inspect, evaluate."),
    "experts": ("experts", "experts", "Train, list and add expert trajectories (the teachers)."),
    "compile": ("compile", "compile_cmd", "Compile a dataset into an artifact: IPC real images per class with teacher labels."),
    "inspect": ("artifact", "inspect_cmd", "Summarise an artifact: classes, labels, entropy, agreement, bytes."),
    "verify": ("artifact", "verify_cmd", "Check every file of an artifact; exit 1 naming the first bad one."),
    "diff": ("artifact", "diff_cmd", "Compare two artifacts: images, selection, labels, recipe, teachers; exit 1 if they differ."),
    "evaluate": ("evaluate", "evaluate_cmd", "Train students on artifacts against baselines; print one table."),
    "report": ("evaluate", "report_cmd", "Merge evaluation results into paper-style tables."),
    "import": ("importers", "import_cmd", "Turn a third-party distilled set (MTT, DC, tensors, h5, folders, parquet) into an artifact."),
    "publish": ("hub", "publish_cmd", "Verify an artifact and upload it to the Hugging Face Hub, tagged."),
    "pull": ("hub", "pull_cmd", "Download an artifact from the Hugging Face Hub and verify it."),
    "analyze": ("analyze", "analyze_cmd", "The paper's analyses: entropy, swap, temperature, scaling, zeroshot, jsd, classes."),
    "sweep": ("sweep", "sweep_cmd", "Student accuracy against expert epoch per IPC: table, plot, best epoch."),
    "data": ("data", "data_cmd", "Where datasets live (add, list, remove), found by every command; fake ImageNets."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported when resolved, with their summaries declared up front."""

    def __init__(self, *args, lazy: dict[str, tuple[str, str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.lazy)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.lazy:
            return None
        module, attr, _ = self.lazy[name]
        return getattr(importlib.import_module(f"cli.{module}"), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, summary) for name, (_, _, summary) in sorted(self.lazy.items())])


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="slc")
def cli():
    """slc, the soft-label dataset compiler.

    Compile a dataset into a few real images per class with expert soft labels, evaluate any
    distilled set by training students, and share artifacts on the Hugging Face Hub.

    \b
    Examples:
      slc demo                                   # the whole pipeline, no download, a few minutes
      slc experts train --dataset cifar10 --data-root DATA --epochs 0.5 --every 0.25
      slc compile --dataset cifar10 --data-root DATA --ipc 10 --teacher convnet_d3@0.5
      slc verify artifacts/c10-ipc10 && slc evaluate artifacts/c10-ipc10
      slc diff artifacts/c10-ipc10 hf://OWNER/c10-ipc10@v1.0.0

    Run `slc COMMAND --help` for a command's flags and examples.
    """


def command_of(argv: list[str]) -> str | None:
    """The command ``argv`` runs: ``"inspect"``, ``"experts train"`` ... (its group and subcommand), or None."""
    words = [a for a in argv if not a.startswith("-")]
    if not words or words[0] not in COMMANDS:
        return None
    return " ".join(words[:2]) if words[0] in ("experts", "import", "data", "analyze") and len(words) > 1 else words[0]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; an :class:`SlcError` becomes one ``error:`` line and its exit code.

    Under torchrun with several ranks, a command that does not split its work over them
    (:data:`sl_compiler.dist.DISTRIBUTED_COMMANDS`) runs on none: rank 0 says so, and every rank
    exits 2. A distributed command's error is printed once, by the rank that raised it or, when
    every rank learnt of it, by rank 0.
    """
    from sl_compiler import dist

    argv = sys.argv[1:] if argv is None else list(argv)
    command = command_of(argv)
    try:
        where = dist.launched()
        refusal = dist.not_distributed(command) if command else None
    except SlcError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    if refusal:
        if where.rank == 0:
            click.echo(f"error: {refusal}", err=True)
        return 2
    try:
        code = cli.main(args=argv, prog_name="slc", standalone_mode=False)
    except SlcError as exc:
        if where.distributed and where.rank != 0 and (isinstance(exc, dist.RankFailed) or getattr(exc, "slc_sent", False)):
            return exc.exit_code  # rank 0 prints it, naming this rank
        click.echo(f"error: {f'rank {where.rank}: ' if where.distributed and where.rank else ''}{exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return code if isinstance(code, int) else 0  # a command's ctx.exit(N) (slc diff: 1 when they differ)


if __name__ == "__main__":
    sys.exit(main())
