"""``slc evaluate`` (students on artifacts, with baselines) and ``slc report`` (merge result files)."""

from __future__ import annotations

import json

import click

from cli.options import SEEDS, dataset_options, device_option, experts_option, skip_bad_option, workers_option
from sl_compiler.errors import RecipeError


def _list(value: str | None, allowed: tuple[str, ...], flag: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if items == ("none",):
        return ()
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise click.BadParameter(f"{value!r}: use a comma list of {', '.join(allowed)}", param_hint=flag)
    return items


def _floats(value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: write numbers like 0.01,0.03,0.1", param_hint="--lr-grid") from None


def _lr(value: str | None) -> float | str | None:
    if value is None or value == "artifact":
        return value
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: write a number like 0.01, or artifact (the learned lr the artifact records)", param_hint="--lr") from None


@click.command("evaluate")
@click.argument("artifacts", nargs=-1, required=True)
@click.option("--protocol", "protocol_path", type=str, help="A protocol in recipes/eval by name (e.g. imagenet-sre2l) or a TOML path.  [default: recipes/eval/<dataset>.toml, else built-in defaults]")
@click.option("--model", help="Student architecture (slc's model registry).  [default: the protocol's]")
@click.option("--epochs", type=int, help="Student epochs.  [default: the protocol's]")
@click.option("--batch-size", type=int, help="Student batch size.  [default: the protocol's]")
@click.option("--lr", help="Fixed learning rate, or 'artifact': the learned lr an imported MTT-family set records.  [default: the protocol's]")
@click.option("--lr-grid", help="Candidates, e.g. 0.01,0.03,0.1: chosen on a held-out slice of the training split.  [default: the protocol's]")
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), help="Student optimizer.  [default: the protocol's]")
@click.option("--augment", help="Augmentation: dsa, cutmix, rrc+flip+cutmix, crop+flip (stages dsa, rrc, crop, flip, cutmix joined by +) or none.  [default: the protocol's]")
@click.option("--seeds", type=SEEDS, help="Student seeds: 0-4 or 0,3,7.  [default: the protocol's]")
@click.option("--regime", "regimes", help="Comma list of sl, slkd, hl.  [default: the protocol's]")
@click.option("--teacher", help="Teacher reference for slkd and random-sl.  [default: the artifact's own; random-sl is skipped when it records none]")
@click.option("--loss", type=click.Choice(["ce", "kl"]), help="Student loss.  [default: the protocol's]")
@click.option("--temperature", type=float, help="KL temperature (--loss kl) and slkd target temperature.  [default: the protocol's]")
@click.option("--baselines", help="random-hl,random-sl or none.  [default: the protocol's]")
@click.option("--zca/--no-zca", default=None, help="Whiten every input with kornia's ZCA (eps: the protocol's zca_eps, 0.1) fitted on the training split, as MTT and no-distillation do.  [default: the protocol's]")
@click.option("--full-data-accuracy", type=float, help="Full-data hard-label accuracy (fraction) for DD-Ranking's HLR.  [default: none, HLR not reported]")
@dataset_options(required=False)
@experts_option
@click.option("--batched/--sequential", default=None, help="Train all students of a cell together or one at a time.  [default: batched on CUDA, sequential on the CPU]")
@click.option("--compile/--no-compile", "compile_", default=False, show_default=True, help="Run the students' training loss through torch.compile (pays on a GPU; minutes of compilation on a CPU).")
@workers_option
@skip_bad_option
@click.option("--out", type=click.Path(path_type=str), help="Write <out>.json and <out>.csv.  [default: print only]")
@device_option
def evaluate_cmd(artifacts, protocol_path, model, epochs, batch_size, lr, lr_grid, optimizer, augment, seeds, regimes, teacher, loss, temperature, baselines, zca, full_data_accuracy, dataset, data_root, experts_dir, batched, compile_, workers, skip_bad, out, device):
    """Train students on each ARTIFACT and print one table: rows artifacts, columns regimes and baselines.

    Under torchrun the students (lr candidates, then seeds, of every cell) are spread over the
    ranks; rank 0 prints and writes the same table and JSON as one process.

    \b
    Examples:
      slc evaluate artifacts/c10-ipc10 --epochs 300 --seeds 0-1 --out results/c10-ipc10
      slc evaluate A B --regime sl,hl --baselines none --protocol recipes/eval/cifar10.toml
      slc evaluate hf://user/imagenet-ipc10@v1.0.0 --protocol imagenet-sre2l --workers 16
      slc evaluate artifacts/c10-ipc1 --protocol cifar10-nodistill          # the paper's own: ZCA, 3000 epochs
      slc evaluate artifacts/mtt-c10-ipc10 --protocol cifar10-nodistill --lr artifact
      torchrun --nproc-per-node 8 --no-python slc evaluate A B --seeds 0-7 --out results/ab
    """
    from sl_compiler import dist
    from sl_compiler.evaluate import default_protocol, evaluate, load_protocol, markdown_table
    from sl_compiler.hub import open_artifact

    if lr is not None and lr_grid is not None:
        raise RecipeError("--lr and --lr-grid both given", "pass one of them")
    arts = [open_artifact(a) for a in artifacts]
    base = load_protocol(protocol_path) if protocol_path else default_protocol(dataset or arts[0].manifest["dataset"]["name"])
    protocol = base.override(
        model=model,
        epochs=epochs,
        batch_size=batch_size,
        lr=_lr(lr),
        lr_grid=_floats(lr_grid),
        optimizer=optimizer,
        augment=augment,
        seeds=seeds,
        regimes=_list(regimes, ("sl", "slkd", "hl"), "--regime"),
        loss=loss,
        temperature=temperature,
        baselines=_list(baselines, ("random-hl", "random-sl"), "--baselines"),
        full_data_accuracy=full_data_accuracy,
        zca=zca,
    )
    result = evaluate(arts, protocol, dataset=dataset, data_root=data_root, experts=experts_dir, teacher=teacher, device=device, batched=batched, out=out, workers=workers, skip_bad=skip_bad, compile=compile_)
    if not dist.team().main:
        return  # under torchrun rank 0 prints and writes for every rank
    click.echo(markdown_table(result))
    if out:
        click.echo(f"\nwrote {out}.json and {out}.csv", err=True)


@click.command("report")
@click.argument("results", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the merged evaluation grid as JSON (slc evaluate results only) instead of markdown.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None,
              help="Also write one self-contained page here: tables, sweep and analysis plots, per-class accuracy, label heat maps, image grids, provenance.  [default: no page]")
@click.option("--title", default="slc report", show_default=True, help="The page's title (with --html).")
def report_cmd(results, as_json, html_path, title):
    """Merge RESULTS (.json from slc evaluate --out, slc sweep's sweep.json, analyses) into
    paper-style tables (rows IPC, columns methods); --html also writes them as one static page.

    The page loads nothing from the network: plots and images are inline. It shows the artifacts'
    heat maps, grids and manifests when their folders (as the results record them, or beside the
    results file) can be read here.

    \b
    Examples:
      slc report results/c10-ipc1.json results/c10-ipc10.json
      slc report results/*.json --json
      slc report results/*.json sweeps/c10/sweep.json --html report.html
    """
    from sl_compiler.report import evaluation_json, load_inputs, to_markdown, write_html

    inputs = load_inputs(list(results))
    click.echo(json.dumps(evaluation_json(inputs), indent=2, sort_keys=True) if as_json else to_markdown(inputs))
    if html_path:
        write_html(inputs, html_path, title=title)
        click.echo(f"wrote {html_path}", err=True)
