"""``slc compile``: a dataset -> a few real images per class with teacher soft labels, as an artifact."""

from __future__ import annotations

import click

from cli.options import dataset_options, device_option, experts_option, skip_bad_option, workers_option
from sl_compiler.errors import RecipeError
from sl_compiler.recipe import AUGMENTS, BPTT_DEFAULTS, LABELERS, SELECT_STRATEGIES, Recipe

BPTT_HELP = {
    "bptt_model": "Student model unrolled in the inner loop",
    "bptt_steps": "T: inner SGD steps per outer step",
    "bptt_window": "M: the last M inner steps are back-propagated through (M <= T)",
    "bptt_lr": "Inner SGD learning rate",
    "bptt_label_lr": "Adam learning rate of the label logits",
    "bptt_outer_steps": "Outer steps (one fresh student each)",
    "bptt_batch": "Real training images per outer loss",
    "bptt_syn_batch": "Distilled images per inner step (all when fewer)",
    "bptt_clip": "Max L2 norm of the label gradient",
}


def bptt_options(f):
    """``--bptt-*``: the settings of ``--labeler bptt`` (defaults in ``BPTT_DEFAULTS``)."""
    for key in reversed(BPTT_DEFAULTS):
        default = BPTT_DEFAULTS[key]
        kind = str if isinstance(default, str) else int if isinstance(default, int) else float
        f = click.option("--" + key.replace("_", "-"), key, type=kind, default=None, help=f"{BPTT_HELP[key]}; --labeler bptt only.  [default: {default}]")(f)
    return f


@click.command("compile")
@click.option("--recipe", "recipe_file", type=click.Path(dir_okay=False, path_type=str), default=None, help="Compile recipe TOML (recipes/compile/*.toml); flags given with it override its values.  [default: none, the recipe comes from the flags]")
@dataset_options(required=False)
@click.option("--ipc", type=int, default=None, help="Images per class (required, here or in --recipe).")
@click.option("--teacher", default=None, help="Teacher reference ARCH@EPOCH[#SEEDS][+...], e.g. convnet_d3@20#0-9 (an ensemble averages logits); required, here or in --recipe, unless --labeler bptt.")
@click.option("--labeler", type=click.Choice(LABELERS), default=None, help="teacher: the teacher's soft labels; bptt: labels learned by truncated BPTT on the real data, no teacher (docs/bptt.md).  [default: teacher]")
@bptt_options
@experts_option
@click.option("--temperature", type=float, default=None, help="Divide logits by T before the softmax.  [default: 1]")
@click.option("--topk", type=int, default=None, help="Store only the K largest probabilities per view (the rest is spread evenly on reading).  [default: dense]")
@click.option("--views", type=int, default=None, help="Augmented views per image, each labelled by the teacher; needs --augment.  [default: 0, the plain image]")
@click.option("--augment", type=click.Choice(AUGMENTS[1:]), default=None, help="Kind of augmented views; needs --views.  [default: none]")
@click.option("--select", type=click.Choice(SELECT_STRATEGIES), default=None, help="Image selection.  [default: random]")
@click.option("--quantile", type=int, default=None, help="ce-quantile decile, 0 (lowest teacher cross-entropy) .. 9 (highest); needed by --select ce-quantile.  [default: none]")
@click.option("--seed", type=int, default=None, help="Seed of the selection and the views.  [default: 0]")
@click.option("--name", default=None, help="Artifact name.  [default: from dataset, ipc and teacher]")
@click.option("--version", "version", default=None, help="Artifact version (semver).  [default: 1.0.0]")
@click.option("--out", type=click.Path(file_okay=False, path_type=str), default=None, help="Artifact folder.  [default: ./artifacts/<name>-<version>-<recipe hash>]")
@click.option("--force", is_flag=True, help="Replace an existing artifact at --out.")
@device_option
@click.option("--batch-size", type=int, default=256, show_default=True, help="Teacher inference batch (speed and memory only).")
@workers_option
@skip_bad_option
@click.option("--write-recipe", type=click.Path(dir_okay=False, path_type=str), default=None, help="Write the resolved recipe to this TOML file and stop without compiling.  [default: compile]")
def compile_cmd(recipe_file, dataset, data_root, ipc, teacher, labeler, experts_dir, temperature, topk, views, augment, select, quantile, seed, name, version, out, force, device, batch_size, workers, skip_bad, write_recipe, **bptt):
    """Compile a dataset into an artifact: IPC real images per class labelled by expert teachers,
    or with labels learned by truncated BPTT and no teacher (--labeler bptt).

    Give the recipe as flags, or as --recipe FILE; flags given together with --recipe override
    the file's values. Prints the artifact's path and content hash, and the files --skip-bad
    left out. Under torchrun the ranks share the scoring and labelling and rank 0 writes the
    artifact, byte-identical at any world size; a killed run resumes from the finished pieces.

    \b
    Examples:
      slc compile --dataset cifar10 --data-root DATA --ipc 10 --teacher convnet_d3@0.5
      slc compile --dataset cifar10 --data-root DATA --ipc 1 --teacher 'convnet_d3@20#0-9' \
          --temperature 2 --views 300 --augment cutmix --topk 10 --out artifacts/c10-ipc1
      slc compile --recipe recipes/compile/cifar10-convnet_d3-ipc10.toml --seed 1
      slc compile --dataset imagenet --ipc 10 --teacher resnet18@43 --workers 16
      torchrun --nproc-per-node 8 --no-python slc compile --dataset imagenet --ipc 50 --teacher resnet18@43
      slc compile --dataset cifar10 --data-root DATA --ipc 10 --labeler bptt --bptt-steps 50 --bptt-window 20
    """
    from sl_compiler import dist
    from sl_compiler.artifact import inspect_artifact, load, summary_table
    from sl_compiler.compile import compile_artifact

    flags = dict(dataset=dataset, data_root=data_root, ipc=ipc, teacher=teacher, temperature=temperature, topk=topk, views=views, augment=augment, select=select, quantile=quantile, seed=seed, name=name, version=version, labeler=labeler, **bptt)
    if recipe_file is not None:
        recipe = Recipe.from_toml(recipe_file).replace(**flags)
    else:
        recipe = Recipe.from_dict({k: v for k, v in flags.items() if v is not None}, source="flags")
    if recipe.labeler == "bptt" and experts_dir is not None:
        raise RecipeError("--labeler bptt learns labels without a teacher, so --experts cannot apply", "drop --experts, or leave out --labeler bptt")
    if write_recipe is not None:
        if dist.launched().rank == 0:  # under torchrun one rank writes it
            click.echo(f"wrote {recipe.write(write_recipe)}")
        return
    path = compile_artifact(recipe, experts=experts_dir, device=device, out=out, force=force, batch_size=batch_size, workers=workers, skip_bad=skip_bad)
    if not dist.team().main:
        return  # under torchrun rank 0 wrote the artifact and reports it
    info = inspect_artifact(path)
    click.echo(summary_table(info))
    click.echo(f"artifact: {path}")
    click.echo(f"content hash: {info['content_hash']}")
    for item in load(path).manifest["selection"].get("skipped", []):
        click.echo(f"skipped {item['source']}: {item['problem']}", err=True)
