"""Flags that mean the same in every command (DESIGN.md: --dataset, --data-root, --experts, --device, --seeds, --out)."""

from __future__ import annotations

import click

from sl_compiler.seeding import parse_seeds


def dataset_options(fn=None, *, required: bool = True):
    """``--dataset NAME|imagefolder:PATH|synthetic[:opts]`` and ``--data-root PATH``."""

    def wrap(f):
        f = click.option("--data-root", type=click.Path(path_type=str), default=None, help="The dataset's native layout, or an ImageFolder with train/ and test/ (or val/).  [default: the location recorded by `slc data add`, SLC_DATA_<NAME> or SLC_DATA]")(f)
        f = click.option("--dataset", required=required, default=None, help="cifar10, cifar100, mnist, fashion_mnist, tinyimagenet, imagenet, imagefolder:PATH, wds:PATH, parquet:PATH or synthetic[:classes=..,size=..] (slc data list shows where each is)." + ("" if required else "  [default: the recipe's or the artifact's]"))(f)
        return f

    return wrap(fn) if fn else wrap


def device_option(f):
    return click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda or cuda:N.")(f)


def experts_option(f):
    return click.option("--experts", "experts_dir", type=click.Path(path_type=str), default=None, help="Expert store; default $SLC_EXPERTS, then ./experts.")(f)


class SeedList(click.ParamType):
    name = "SEEDS"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            return parse_seeds(value)
        except Exception as exc:  # SlcError: show as a usage error
            self.fail(str(exc), param, ctx)


SEEDS = SeedList()


def workers_option(f):
    """``--workers N``: decoding processes of the streaming loader (sl_compiler.data.stream)."""
    return click.option(
        "--workers",
        type=click.IntRange(min=0),
        default=None,
        help="Processes that decode images of file-backed datasets in parallel; 0 decodes in this process.  [default: the core count]",
    )(f)


def skip_bad_option(f):
    """``--skip-bad``: drop undecodable images, recording them, instead of stopping at the first."""
    return click.option("--skip-bad", is_flag=True, help="Skip images that cannot be decoded and record them (in the manifest or results) instead of stopping at the first one.")(f)
