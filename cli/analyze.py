"""``slc analyze NAME``: the paper's analyses on any dataset and expert store (sl_compiler.analyze)."""

from __future__ import annotations

import click

from cli.options import SEEDS, dataset_options, device_option, experts_option
from cli.sweep import _epochs, _ipcs


def _ints(ctx, param, value):
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a list of integers; write 1,2,4") from None


def _floats(ctx, param, value):
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a list of numbers; write 0.5,1,2") from None


def grid_options(f):
    """The grid every analysis shares: the sweep's flags, plus the budget."""
    for option in reversed([
        click.option("--teacher-arch", required=True, help="Expert architecture in the store, e.g. convnet_d3."),
        click.option("--seeds", type=SEEDS, default="0", show_default=True, help="Expert seeds; several make each teacher an ensemble (logits averaged)."),
        click.option("--epochs", callback=_epochs, default="all", show_default=True, help="Expert epochs, e.g. 0.25,1, or all the checkpoints the seeds share."),
        click.option("--ipc", "ipcs", callback=_ipcs, default="10", show_default=True, help="Images per class, e.g. 1,10."),
        click.option("--protocol", type=click.Path(dir_okay=False, path_type=str), default=None, help="Evaluation protocol TOML; default recipes/eval/<dataset>.toml."),
        click.option("--eval-seeds", type=SEEDS, default=None, help="Student seeds; default the protocol's."),
        click.option("--student-epochs", type=int, default=None, help="Override the protocol's student epochs (short CPU runs).  [default: the protocol's]"),
        click.option("--select-seed", type=int, default=0, show_default=True, help="Seed of the random image selection."),
        click.option("--budget", type=click.IntRange(min=0), default=200, show_default=True, help="Student runs (cells x evaluation seeds) to start without --yes."),
        click.option("--yes", is_flag=True, help="Run a grid larger than --budget."),
        click.option("--out", type=click.Path(file_okay=False, path_type=str), default=None, help="Output folder: artifacts, cell cache, NAME.json/.csv/.md/.png.  [default: runs/analyze/NAME]"),
    ]):
        f = option(f)
    return dataset_options(experts_option(device_option(f)))


def _run(name: str, options: dict, **extra):
    from sl_compiler.analyze import AnalysisSpec, run_analysis

    out = options.pop("out") or f"runs/analyze/{name}"
    lookup = extra.pop("lookup", [])
    spec = AnalysisSpec(
        dataset=options["dataset"], data_root=options["data_root"], teacher_arch=options["teacher_arch"], seeds=tuple(options["seeds"]), epochs=options["epochs"],
        ipcs=options["ipcs"], protocol=options["protocol"], eval_seeds=tuple(options["eval_seeds"]) if options["eval_seeds"] else None,
        student_epochs=options["student_epochs"], select_seed=options["select_seed"], experts=options["experts_dir"], device=options["device"],
        budget=options["budget"], yes=options["yes"],
    )
    result = run_analysis(name, spec, out, lookup, **extra)
    click.echo(result.markdown)
    counts = result.counts
    click.echo(f"{counts['cached']} cells cached, {counts['computed']} computed; wrote {out}/{name}.json, .csv, .md, .png")


@click.group("analyze")
def analyze_cmd():
    """The paper's analyses (Qin, Deng, Alvarez-Melis 2024) on any dataset and expert store.

    Every analysis compiles the sweep's (IPC, expert epoch) artifacts, changes their labels where
    it ablates them, trains students under one protocol (final-epoch accuracy, as slc evaluate)
    and writes NAME.json, .csv, .md and .png into --out. Cells are cached by content hash and
    protocol: a rerun, or a widened grid, trains only what is new. See docs/analyze.md.

    \b
    Examples:
      slc analyze swap --dataset cifar10 --data-root DATA --teacher-arch convnet_d3 --epochs 1 --ipc 1,10
      slc analyze scaling --dataset cifar10 --data-root DATA --teacher-arch convnet_d3 --epochs 1 --ipc 1,2,5,10,20
    """


@analyze_cmd.command("entropy")
@grid_options
@click.option("--train", is_flag=True, help="Train students for the cells no cache holds (default: report cached accuracies only).")
@click.option("--sweep", "sweep_dir", type=click.Path(file_okay=False, path_type=str), default=None, help="A slc sweep --out whose cache to read student accuracies from.  [default: none]")
def entropy_cmd(train, sweep_dir, **options):
    """Expert accuracy, label entropy and student accuracy per expert epoch (Figure 2).

    \b
    Examples:
      slc analyze entropy --dataset cifar10 --teacher-arch convnet_d3 --ipc 10 --sweep runs/sweep
    """
    from pathlib import Path

    _run("entropy", options, train=train, lookup=[Path(sweep_dir) / "cache"] if sweep_dir else [])


@analyze_cmd.command("swap")
@grid_options
@click.option("--index", "indices", callback=_ints, default=None, help="Swap ranks i (1 = the largest), e.g. 1,2,5.  [default: 1 .. classes-1]")
def swap_cmd(indices, **options):
    """The i-th label swapping test: accuracy relative to unswapped, per i and IPC (Figure 4).

    \b
    Examples:
      slc analyze swap --dataset cifar10 --teacher-arch convnet_d3 --epochs 2 --ipc 1,10 --index 1,2,3,5,9
    """
    _run("swap", options, indices=indices)


@analyze_cmd.command("temperature")
@grid_options
@click.option("--temperatures", callback=_floats, default="0.5,1,2,4", show_default=True, help="Label temperatures T (softmax(logits / T)).")
def temperature_cmd(temperatures, **options):
    """Student accuracy over the (expert epoch x temperature) grid (Figure 5).

    \b
    Examples:
      slc analyze temperature --dataset cifar10 --teacher-arch convnet_d3 --epochs 1,2,5 --temperatures 1,2,4
    """
    _run("temperature", options, temperatures=temperatures)


@analyze_cmd.command("scaling")
@grid_options
@click.option("--k", "ks", callback=_ints, default=None, help="Top-k values kept per label, e.g. 1,2,4,10.  [default: powers of two below the class count, and all classes]")
@click.option("--renormalize", is_flag=True, help="Renormalise the kept top-k values (the paper does not).")
def scaling_cmd(ks, renormalize, **options):
    """The knowledge-data scaling law: top-k x IPC plus hard labels, its fit and data-size factor (Figures 6, 11).

    \b
    Examples:
      slc analyze scaling --dataset cifar10 --teacher-arch convnet_d3 --epochs 2 --ipc 1,2,5,10,20 --k 1,2,5,10
    """
    _run("scaling", options, ks=ks, renormalize=renormalize)


@analyze_cmd.command("zeroshot")
@grid_options
@click.option("--class", "classes", callback=_ints, default=None, help="Class indices to remove, one at a time, e.g. 0,3.  [default: every class]")
@click.option("--renormalize", is_flag=True, help="Renormalise the labels after remove-label zeroes the class (the paper does not).")
def zeroshot_cmd(classes, renormalize, **options):
    """Class removal: control, remove image, remove label; accuracy on the removed class and the rest (Figure 7).

    \b
    Examples:
      slc analyze zeroshot --dataset cifar10 --teacher-arch convnet_d3 --epochs 2 --ipc 1,10 --class 0,3,5
    """
    _run("zeroshot", options, classes=classes, renormalize=renormalize)


@analyze_cmd.command("jsd")
@grid_options
@click.option("--artifact", "artifact_path", required=True, help="The artifact whose labels are compared (e.g. compiled with --labeler bptt), a folder or hf://.")
def jsd_cmd(artifact_path, **options):
    """Jensen-Shannon distance of an artifact's labels to each expert epoch's ensemble labels (Figures 8, 12).

    \b
    Examples:
      slc analyze jsd --dataset cifar10 --teacher-arch convnet_d3 --seeds 0-4 --artifact artifacts/bptt-ipc10
    """
    from sl_compiler.hub import open_artifact

    _run("jsd", options, artifact=open_artifact(artifact_path))


@analyze_cmd.command("classes")
@grid_options
@click.option("--artifact", "artifact_path", default=None, help="Draw this artifact's labels instead of the grid's one cell.  [default: the grid's one cell]")
def classes_cmd(artifact_path, **options):
    """The mean soft label per class as a heat map (Figure 10).

    \b
    Examples:
      slc analyze classes --dataset cifar10 --teacher-arch convnet_d3 --epochs 2 --ipc 10
    """
    from sl_compiler.hub import open_artifact

    _run("classes", options, artifact=open_artifact(artifact_path) if artifact_path else None)
