"""``slc data``: where datasets live (add, list, remove) and fake ImageNets (sl_compiler.data)."""

from __future__ import annotations

import json

import click



@click.group("data")
def data_cmd():
    """Name where each dataset lives once, so every command finds it; write fake ImageNets.

    A dataset's root is found in this order: --data-root; SLC_DATA_<NAME>=PATH (e.g.
    SLC_DATA_CIFAR10), then SLC_DATA=name=PATH,name=PATH; the config file written by `slc data
    add` ($XDG_CONFIG_HOME/slc/datasets.toml, default ~/.config/slc/datasets.toml); a system
    default (Debian's fashion-mnist).

    \b
    Examples:
      slc data add cifar10 ~/data/cifar10
      slc data list
      slc data fake --layout ilsvrc-tars --classes 100 --per-class 20 --out /tmp/fake-imagenet
    """


@data_cmd.command("add")
@click.argument("name")
@click.argument("path", type=click.Path(path_type=str))
def add_cmd(name, path):
    """Record that dataset NAME lives at PATH (kept in the user config file).

    \b
    Examples:
      slc data add cifar10 ../shared/data/cifar10
      slc data add imagenet /data/ILSVRC2012
    """
    from sl_compiler.data.locations import add_location, config_path
    from sl_compiler.data.registry import root_entry

    key, root = add_location(name, path)
    layout = root_entry(key).describe_layout(root)
    click.echo(f"{key} -> {root} ({layout or 'no layout of ' + key + ' recognised there yet'})")
    click.echo(f"saved in {config_path()}")


@data_cmd.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_cmd(as_json):
    """Every dataset that lives at a location: its path, where that was set, whether it exists, its layout.

    \b
    Examples:
      slc data list
      slc data list --json
    """
    from sl_compiler.data.locations import summary, table

    rows = summary()
    click.echo(json.dumps(rows, indent=2) if as_json else table(rows))


@data_cmd.command("remove")
@click.argument("name")
def remove_cmd(name):
    """Forget the recorded location of dataset NAME (the files are not touched).

    \b
    Examples:
      slc data remove cifar10
    """
    from sl_compiler.data.locations import config_path, remove_location

    old = remove_location(name)
    click.echo(f"removed {name} ({old}) from {config_path()}")


@data_cmd.command("fake")
@click.option("--layout", required=True, type=click.Choice(["imagefolder", "imagefolder-tar", "ilsvrc-tars", "flat-val-devkit", "kaggle", "wds", "parquet", "tinyimagenet", "tinyimagenet-classval"]), help="Which distribution of ImageNet (or TinyImageNet) to imitate.")
@click.option("--classes", default=10, show_default=True, type=click.IntRange(min=1), help="Number of classes.")
@click.option("--per-class", default=10, show_default=True, type=click.IntRange(min=1), help="Training images per class.")
@click.option("--val-per-class", default=5, show_default=True, type=click.IntRange(min=1), help="Validation images per class.")
@click.option("--min-size", default=200, show_default=True, type=click.IntRange(min=8), help="Smallest image side in pixels.")
@click.option("--max-size", default=500, show_default=True, type=click.IntRange(min=8), help="Largest image side in pixels (each side drawn in [min, max]).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed: the same arguments write byte-identical files.")
@click.option("--out", required=True, type=click.Path(path_type=str), help="Folder to write (must not exist unless --force).")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def fake_cmd(layout, classes, per_class, val_per_class, min_size, max_size, seed, out, force):
    """Write a fake ImageNet: class-dependent JPEGs of varied sizes in one of the real layouts.

    \b
    Examples:
      slc data fake --layout ilsvrc-tars --classes 100 --per-class 20 --out /tmp/fake-in1k
      slc data fake --layout flat-val-devkit --classes 10 --min-size 32 --max-size 64 --out /tmp/fake-small
    """
    from sl_compiler.data.fake import FakeSpec, write_fake

    spec = FakeSpec(classes=classes, per_class=per_class, val_per_class=val_per_class, min_size=min_size, max_size=max_size, seed=seed)
    path = write_fake(out, layout, spec, force=force)
    name = "tinyimagenet" if layout.startswith("tinyimagenet") else "imagenet"
    click.echo(f"wrote a fake {name} ({layout}): {classes} classes, {classes * per_class} train and {classes * val_per_class} val images -> {path}")
    click.echo(f"use it with --dataset {name} --data-root {path}")
