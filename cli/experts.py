"""``slc experts``: train, list and add expert trajectories (sl_compiler.experts)."""

from __future__ import annotations

import json

import click

from cli.options import SEEDS, dataset_options, device_option, experts_option, workers_option


class FloatList(click.ParamType):
    """``0.485,0.456,0.406`` -> [0.485, 0.456, 0.406]."""

    name = "FLOATS"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            return [float(v) for v in str(value).split(",")]
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of numbers, e.g. 0.485,0.456,0.406", param, ctx)


def _note(message: str) -> None:
    click.echo(message, err=True)


def val_subset_option(f):
    return click.option(
        "--val-subset",
        type=click.IntRange(min=1),
        default=None,
        help="Test on N images of the test split, per class balanced and fixed (seed recorded in the trajectory), instead of all of it.  [default: the whole split]",
    )(f)


def no_wait_option(f):
    return click.option("--no-wait", is_flag=True, help="Fail at once when another process is writing the same trajectory, instead of waiting for it.")(f)


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
@click.option("--recipe", type=click.Path(dir_okay=False, path_type=str), default=None, help="Expert recipe TOML.  [default: recipes/experts/<dataset>-<model>.toml if shipped, else recipes/experts/default-<model>.toml]")
@click.option("--lr", type=float, default=None, help="Override the recipe's learning rate.  [default: the recipe's]")
@click.option("--batch-size", type=int, default=None, help="Override the recipe's (global) batch size.  [default: the recipe's]")
@click.option("--force", is_flag=True, help="Retrain trajectories that exist (complete or not) from scratch.")
@click.option("--stream", is_flag=True, help="Decode a split of image files in worker processes on every pass instead of holding it decoded in memory.  [default: hold splits of files under 4 GiB decoded]")
@workers_option
@val_subset_option
@no_wait_option
@experts_option
@device_option
def train_cmd(dataset, data_root, arch, epochs, seeds, every, recipe, lr, batch_size, force, stream, workers, val_subset, no_wait, experts_dir, device):
    """Train expert trajectories; an interrupted run resumes where it stopped.

    Under torchrun the ranks train each trajectory together (DistributedDataParallel, the same
    global batches as one process); rank 0 writes the store and prints.

    \b
    Examples:
      slc experts train --dataset cifar10 --data-root DATA --model convnet_d3 --epochs 0.5 --every 0.25
      slc experts train --dataset cifar10 --data-root DATA --seeds 0-4 --epochs 50
      slc experts train --dataset imagenet --model resnet18 --epochs 90 --workers 16
      torchrun --nproc-per-node 8 --no-python slc experts train --dataset imagenet --model resnet18
    """
    from sl_compiler import dist
    from sl_compiler.experts import default_store, format_epoch
    from sl_compiler.experts.train import train_trajectories

    store = default_store(experts_dir)
    try:
        results = train_trajectories(
            dataset, arch, seeds, data_root=data_root, recipe=recipe, epochs=epochs, every=every, lr=lr, batch_size=batch_size, store=store, device=device,
            force=force, workers=workers, in_memory=False if stream else None, val_subset=val_subset, wait=not no_wait, log=_note,
        )  # fmt: skip
    except KeyboardInterrupt:
        click.echo(f"interrupted: completed checkpoints are kept in {store.root}; rerun the same command to resume", err=True)
        raise click.Abort() from None
    if not dist.team().main:
        return  # under torchrun rank 0 reports for every rank
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
    from sl_compiler.experts import default_store
    from sl_compiler.experts.listing import summary, table

    store = default_store(experts_dir)
    click.echo(json.dumps(summary(store), indent=2, sort_keys=True) if as_json else table(store))


@experts.command("add")
@click.argument("checkpoint", type=click.Path(path_type=str))
@dataset_options
@click.option("--model", "arch", required=True, help="Architecture the checkpoint belongs to.")
@click.option("--epoch", type=float, required=True, help="Epoch the checkpoint was saved at (may be fractional).")
@click.option("--seed", type=int, default=0, show_default=True, help="Trajectory (seed) to add it to.")
@click.option("--preprocess", type=click.Choice(["torchvision"]), default=None, help="The checkpoint's input transform by name: torchvision = resize 256, centre crop 224, bilinear, ImageNet mean/std (torchvision's ImageNet weights and train.py).  [default: the dataset's own]")
@click.option("--resize", type=click.IntRange(min=1), default=None, help="Resize the shorter side to this many pixels before the centre crop (overrides --preprocess).  [default: the dataset's]")
@click.option("--crop", type=click.IntRange(min=1), default=None, help="Centre crop (and model input) size in pixels (overrides --preprocess).  [default: the dataset's resolution]")
@click.option("--mean", type=FloatList(), default=None, help="Per-channel normalisation mean, comma-separated (overrides --preprocess).  [default: the dataset's]")
@click.option("--std", type=FloatList(), default=None, help="Per-channel normalisation std, comma-separated (overrides --preprocess).  [default: the dataset's]")
@click.option("--force", is_flag=True, help="Replace a checkpoint that already exists at that epoch.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True, help="Test images per forward pass (memory and speed only).")
@workers_option
@val_subset_option
@no_wait_option
@experts_option
@device_option
def add_cmd(checkpoint, dataset, data_root, arch, epoch, seed, preprocess, resize, crop, mean, std, force, batch_size, workers, val_subset, no_wait, experts_dir, device):
    """Add an external checkpoint (safetensors, or a torchvision-style state_dict) to the store, with its test accuracy.

    \b
    Examples:
      slc experts add model_43.pth --dataset imagenet --data-root DATA --model resnet18 --epoch 43 --preprocess torchvision
      slc experts add ckpt.safetensors --dataset cifar10 --model convnet_d3 --epoch 2.5 --seed 1
    """
    from sl_compiler.experts import default_store, format_epoch
    from sl_compiler.experts.external import import_checkpoint

    trajectory, point, note = import_checkpoint(
        checkpoint, dataset=dataset, data_root=data_root, arch=arch, epoch=epoch, seed=seed, store=default_store(experts_dir), device=device, force=force,
        preprocess=preprocess, resize=resize, crop=crop, mean=mean, std=std, workers=workers, val_subset=val_subset, wait=not no_wait, batch_size=batch_size,
    )  # fmt: skip
    acc = f", test {point.test_accuracy:.2f}%" if point.test_accuracy is not None else ""
    steps = trajectory.preprocess
    click.echo(f"added {arch}@{format_epoch(point.epoch)}#{seed} for {trajectory.dataset_key}{acc} -> {trajectory.path / point.file}")
    click.echo(f"  preprocess: resize {steps['resize']}, crop {steps['crop'][0]}, mean {steps['mean']}, std {steps['std']}")
    if note:
        click.echo(f"  note: {note}")
