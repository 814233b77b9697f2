"""``slc inspect``, ``slc verify`` and ``slc diff``: look inside an artifact, check it, compare two."""

from __future__ import annotations

import json

import click

from sl_compiler.errors import ArtifactError, SlcError


@click.command("inspect")
@click.argument("artifact")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of a table.")
@click.option("--grid", "grid_path", type=click.Path(dir_okay=False), default=None,
              help="Also draw the images per class into this PNG, each captioned with its label's top-3 classes; views replayed for per-view artifacts.  [default: no grid]")
@click.option("--per-class", type=click.IntRange(min=1), default=None, help="Images per class in the grid.  [default: 8, or 4 when views are drawn]")
@click.option("--max-classes", type=click.IntRange(min=0), default=10, show_default=True, help="Classes (rows) in the grid, the first of the class list; 0 draws all.")
@click.option("--views", type=click.IntRange(min=0), default=2, show_default=True, help="Replayed views drawn after each image of a per-view artifact; 0 draws the images only.")
def inspect_cmd(artifact: str, as_json: bool, grid_path: str | None, per_class: int | None, max_classes: int, views: int):
    """Summarise ARTIFACT (a folder or hf://OWNER/NAME@REV): classes, selection, labels, entropy and
    agreement per class, and where the bytes go. --grid also draws its images.

    With the default grid options, --grid draws the artifact's own grid.png (the card's picture).

    \b
    Examples:
      slc inspect artifacts/c10-ipc10
      slc inspect hf://OWNER/c10-ipc10@v1.0.0 --json
      slc inspect artifacts/c10-ipc10 --grid c10.png --per-class 10 --max-classes 0
    """
    from sl_compiler.artifact import inspect_artifact, summary_table
    from sl_compiler.artifact.inspect import write_grid
    from sl_compiler.hub import local_artifact

    folder = local_artifact(artifact)
    info = inspect_artifact(folder)
    if grid_path is not None:
        write_grid(folder, grid_path, per_class=per_class, max_classes=max_classes, views=views)
    click.echo(json.dumps(info, indent=2, sort_keys=True) if as_json else summary_table(info))
    if grid_path is not None:
        click.echo(f"wrote {grid_path}", err=True)


@click.command("verify")
@click.argument("artifact")
def verify_cmd(artifact: str):
    """Check every file of ARTIFACT (a folder or hf://OWNER/NAME@REV): the manifest's bytes and
    fields, the card, each shard's sha256, every sample and label. Exit 1 naming the first bad file.

    \b
    Examples:
      slc verify artifacts/c10-ipc10
      slc verify hf://OWNER/c10-ipc10@v1.0.0
    """
    from sl_compiler.hub import verify_artifact

    click.echo(verify_artifact(artifact).summary())


@click.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON instead of a report.")
@click.option("--tolerance-ulps", type=click.IntRange(min=0), default=0, show_default=True,
              help="Label values this many float16 ulps apart still match (another CPU's float kernels); 0 asks for identical labels.")
def diff_cmd(a: str, b: str, as_json: bool, tolerance_ulps: int):
    """Compare artifacts A and B (folders or hf://OWNER/NAME@REV): images (sha256 of each, then
    pixels), selection (source of each sample), labels (max difference and float16 ulps per view),
    views, recipe, teachers and dataset.

    Exit 0 when they match (equal content hashes, or every compared field equal), 1 when they
    differ, 2 when either cannot be read, like diff(1).

    \b
    Examples:
      slc diff artifacts/c10-ipc10 hf://OWNER/c10-ipc10@v1.0.0   # does my rebuild match?
      slc diff A B --tolerance-ulps 2 --json
    """
    from sl_compiler.artifact.diff import diff_artifacts
    from sl_compiler.hub import local_artifact

    try:
        report = diff_artifacts(local_artifact(a), local_artifact(b), tolerance_ulps=tolerance_ulps)
    except SlcError as exc:  # an unreadable side is bad input (2), even when verify would say 1
        raise ArtifactError(exc.problem, exc.fix) from None
    click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True) if as_json else report.to_text())
    if not report.match:
        raise click.exceptions.Exit(1)
