"""``slc sweep``: student accuracy against expert epoch, per IPC."""

from __future__ import annotations

import click

from cli.options import SEEDS, dataset_options, device_option, experts_option


def _epochs(ctx, param, value: str):
    if value.strip().lower() == "all":
        return None
    try:
        return tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a list of epochs; write 0.25,0.5,1 or all") from None


def _ipcs(ctx, param, value: str):
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a list of integers; write 1,10,50") from None


@click.command("sweep")
@dataset_options
@click.option("--teacher-arch", required=True, help="Expert architecture in the store, e.g. convnet_d3.")
@click.option("--seeds", type=SEEDS, default="0", show_default=True, help="Expert seeds; several make each teacher an ensemble (logits averaged).")
@click.option("--epochs", callback=_epochs, default="all", show_default=True, help="Expert epochs to sweep, e.g. 0.25,0.5,1,2, or all the checkpoints the seeds share.")
@click.option("--ipc", "ipcs", callback=_ipcs, required=True, help="Images per class, e.g. 1,10,50.")
@click.option("--protocol", type=click.Path(dir_okay=False, path_type=str), default=None, help="Evaluation protocol TOML; default recipes/eval/<dataset>.toml.")
@click.option("--eval-seeds", type=SEEDS, default=None, help="Student seeds; default the protocol's.")
@click.option("--student-epochs", type=int, default=None, help="Override the protocol's student epochs (short CPU runs).  [default: the protocol's]")
@click.option("--select-seed", type=int, default=0, show_default=True, help="Seed of the random image selection.")
@click.option("--select-on", type=click.Choice(["holdout", "test"]), default="holdout", show_default=True,
              help="What chooses the best epoch: a held-out slice of the training split (the protocol's holdout_fraction and baseline_seed; test accuracy shown beside it), or the test set (the paper's way).")
@experts_option
@click.option("--out", type=click.Path(file_okay=False, path_type=str), default="runs/sweep", show_default=True, help="Output folder: artifacts, result cache, sweep.md/.json/.png.")
@click.option("--predict", is_flag=True, help="Rank the expert epochs from label statistics (teacher fit on the held-out slice, label entropy, JSD to the mean label) without training a student; beside a finished sweep in OUT, report the Spearman correlation and the accuracy lost. Writes OUT/predict.md/.json/.png.")
@click.option("--write-recipes", type=click.Path(file_okay=False, path_type=str), default=None, help="Write the winning compile recipe per IPC as TOML into this folder.  [default: none]")
@device_option
def sweep_cmd(dataset, data_root, teacher_arch, seeds, epochs, ipcs, protocol, eval_seeds, student_epochs, select_seed, select_on, experts_dir, out, predict, write_recipes, device):
    """Compile and evaluate every (IPC, expert epoch) pair; report the best epoch per IPC.

    The best epoch is chosen on a held-out slice of the training split, never seen by the cells'
    students, with test accuracy beside it; --select-on test chooses on the test set as the paper
    did (and slc 0.1.0 always did).

    Results are cached per (artifact content hash, protocol) under OUT/cache, so a rerun or an
    extended grid does only the new work. Under torchrun the cells are spread over the ranks
    (each cell compiled and evaluated by one rank; OUT must be a folder every rank sees) and
    rank 0 writes the reports.

    \b
    Examples:
      slc sweep --dataset cifar10 --data-root DATA --teacher-arch convnet_d3 --ipc 1,10 --epochs 0.25,0.5,1
      slc sweep --dataset cifar10 --data-root DATA --teacher-arch convnet_d3 --ipc 10 --write-recipes recipes/mine
      torchrun --nproc-per-node 8 --no-python slc sweep --dataset cifar10 --teacher-arch convnet_d3 --ipc 1,10,50
      slc sweep --dataset cifar10 --data-root DATA --teacher-arch convnet_d3 --ipc 1,10 --predict   # no student: one teacher pass per epoch
    """
    from sl_compiler import dist
    from sl_compiler.errors import RecipeError
    from sl_compiler.sweep import SweepSpec, run_sweep

    if predict and dist.team().distributed:
        raise RecipeError("--predict runs in one process (it trains no student)", "run slc sweep --predict without torchrun")
    if predict and write_recipes:
        raise RecipeError("--write-recipes needs measured students, and --predict trains none", "run slc sweep without --predict to write the winning recipes")

    spec = SweepSpec(
        dataset=dataset,
        data_root=data_root,
        teacher_arch=teacher_arch,
        seeds=tuple(seeds),
        epochs=epochs,
        ipcs=ipcs,
        protocol=protocol,
        eval_seeds=tuple(eval_seeds) if eval_seeds else None,
        student_epochs=student_epochs,
        select_seed=select_seed,
        select_on=select_on,
        experts=experts_dir,
        device=device,
    )
    if predict:
        import time

        from sl_compiler.predict import predict as run_predict

        start = time.perf_counter()
        prediction = run_predict(spec, out)
        click.echo(prediction.to_markdown())
        click.echo(f"predicted in {time.perf_counter() - start:.1f} s, no student trained; wrote {out}/predict.md, predict.json, predict.png")
        return
    result = run_sweep(spec, out)
    if not dist.team().main:
        return  # under torchrun rank 0 prints and writes for every rank
    click.echo(result.to_markdown())
    counts = result.counts
    click.echo(f"{counts['cached']} cells cached, {counts['computed']} computed; wrote {out}/sweep.md, sweep.json, sweep.png")
    if write_recipes:
        for path in result.write_recipes(write_recipes):
            click.echo(f"wrote {path}")
