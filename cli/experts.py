"""``slc experts``: train, list and add expert trajectories (sl_compiler.experts)."""

from __future__ import annotations

import json

import click

from cli.options import SEEDS, dataset_options, device_option, experts_option
from sl_compiler.experts import default_store, format_epoch


@click.group("experts")
def experts():
    """Expert trajectories: checkpoints that label datasets as teachers (ARCH@EPOCH#SEEDS).

    \b
    Examples:
      slc experts train --dataset cifar10 --data-root DATA --epochs 0.5 --every 0.25
      slc experts list
    """


@experts.command("train")
@dataset_options
@click.option("--model", "arch", default="convnet_d3", show_default=True, help="Architecture (slc models registry).")
@click.option("--epochs", type=float, default=None, help="Stop after this many epochs (may be fractional); the learning-rate schedule still follows the recipe's full run, so a short run is a prefix of the full trajectory, and a later run with more --epochs extends it. Default: the recipe's epochs.")
@click.option("--seeds", type=SEEDS, default="0", show_default=True, help="One trajectory per seed: 3, 0-9 or 0,3,7.")
@click.option("--every", type=float, default=1.0, show_default=True, help="Checkpoint interval in epochs (1, 0.5, 0.25, ...); epoch 0 is always saved.")
@click.option("--recipe", type=click.Path(dir_okay=False, path_type=str), default=None, help="Expert recipe TOML; default recipes/experts/<dataset>-<model>.toml.")
@click.option("--lr", type=float, default=None, help="Override the recipe's learning rate.  [default: the recipe's]")
@click.option("--batch-size", type=int, default=None, help="Override the recipe's batch size.  [default: the recipe's]")
@click.option("--force", is_flag=True, help="Retrain trajectories that exist (complete or not) from scratch.")
@experts_option
@device_option
def train_cmd(dataset, data_root, arch, epochs, seeds, every, recipe, lr, batch_size, force, experts_dir, device):
    """Train expert trajectories; an interrupted run resumes where it stopped.

    \b
    Examples:
      slc experts train --dataset cifar10 --data-root DATA --model convnet_d3 --epochs 0.5 --every 0.25
      slc experts train --dataset cifar10 --data-root DATA --seeds 0-4 --epochs 50
    """
    from sl_compiler.experts.train import train_trajectories

    store = default_store(experts_dir)
    try:
        results = train_trajectories(
            dataset, arch, seeds, data_root=data_root, recipe=recipe, epochs=epochs, every=every, lr=lr, batch_size=batch_size, store=store, device=device, force=force
        )
    except KeyboardInterrupt:
        click.echo(f"interrupted: completed checkpoints are kept in {store.root}; rerun the same command to resume", err=True)
        raise click.Abort() from None
    for r in results:
        t = r.trajectory
        last = t.checkpoints[-1] if t.checkpoints else None
        acc = f", test {last.test_accuracy:.2f}% at epoch {format_epoch(last.epoch)}" if last and last.test_accuracy is not None else ""
        click.echo(f"{t.dataset_key} {t.arch} seed {t.seed}: {r.status}, {len(t.checkpoints)} checkpoints{acc} -> {t.path}")
        if r.note:
            click.echo(f"  note: {r.note}")


@experts.command("list")
@experts_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_cmd(experts_dir, as_json):
    """The store's trajectories: checkpoints and test accuracy.

    \b
    Examples:
      slc experts list
      slc experts list --experts runs/experts --json
    """
    from sl_compiler.experts.listing import summary, table

    store = default_store(experts_dir)
    click.echo(json.dumps(summary(store), indent=2, sort_keys=True) if as_json else table(store))


@experts.command("add")
@click.argument("checkpoint", type=click.Path(path_type=str))
@dataset_options
@click.option("--model", "arch", required=True, help="Architecture the checkpoint belongs to.")
@click.option("--epoch", type=float, required=True, help="Epoch the checkpoint was saved at (may be fractional).")
@click.option("--seed", type=int, default=0, show_default=True, help="Trajectory (seed) to add it to.")
@click.option("--force", is_flag=True, help="Replace a checkpoint that already exists at that epoch.")
@experts_option
@device_option
def add_cmd(checkpoint, dataset, data_root, arch, epoch, seed, force, experts_dir, device):
    """Add an external checkpoint (safetensors, or a torchvision-style state_dict) to the store.

    \b
    Examples:
      slc experts add resnet18-ep43.safetensors --dataset imagenet --data-root DATA --model resnet18 --epoch 43
      slc experts add ckpt.pt --dataset cifar10 --model convnet_d3 --epoch 2.5 --seed 1
    """
    from sl_compiler.experts.external import import_checkpoint

    trajectory, point, note = import_checkpoint(
        checkpoint, dataset=dataset, data_root=data_root, arch=arch, epoch=epoch, seed=seed, store=default_store(experts_dir), device=device, force=force
    )
    acc = f", test {point.test_accuracy:.2f}%" if point.test_accuracy is not None else ""
    click.echo(f"added {arch}@{format_epoch(point.epoch)}#{seed} for {trajectory.dataset_key}{acc} -> {trajectory.path / point.file}")
    if note:
        click.echo(f"  note: {note}")
