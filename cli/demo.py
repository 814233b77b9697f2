"""``slc demo``: the whole pipeline on the embedded synthetic dataset (sl_compiler.demo)."""

from __future__ import annotations

import click

from cli.options import device_option


@click.command("demo")
@click.option("--out", default="slc-demo", show_default=True, type=click.Path(path_type=str), help="Folder for the expert store, the artifact and the results.")
@device_option
def demo(out, device):
    """Train an expert, compile an artifact, verify, inspect and evaluate it: no download, a few minutes.

    Runs on the built-in synthetic dataset (seeded images made in a second); everything lands in OUT.

    \b
    Examples:
      slc demo
      slc demo --out /tmp/slc-demo --device cpu
    """
    from sl_compiler.demo import run_demo

    run_demo(out, device=device, echo=click.echo)
