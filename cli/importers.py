"""``slc import FORMAT ...``: third-party distilled sets into artifacts (sl_compiler.importers)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.options import dataset_options, device_option, experts_option


class FloatList(click.ParamType):
    """``0.4914,0.4822,0.4465`` -> [0.4914, 0.4822, 0.4465]."""

    name = "FLOATS"

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return [float(v) for v in value]
        try:
            return [float(v) for v in str(value).split(",") if v.strip()]
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of numbers", param, ctx)


def output_options(f):
    """--out, --name, --version, --force: where and as what the artifact is written."""
    f = click.option("--force", is_flag=True, help="Replace an existing artifact at --out.")(f)
    f = click.option("--version", "version", default="1.0.0", show_default=True, help="Artifact version (semver).")(f)
    f = click.option("--name", default=None, help="Artifact name.  [default: <format>-<dataset>-ipc<N>]")(f)
    f = click.option("--out", type=click.Path(path_type=Path), default=None, help="Artifact folder to write.  [default: ./<name>-<version>]")(f)
    return f


def normalisation_options(f):
    f = click.option("--std", type=FloatList(), default=None, help="Per-channel std the tensors were normalised with (default: the codebases' convention for --dataset).")(f)
    f = click.option("--mean", type=FloatList(), default=None, help="Per-channel mean the tensors were normalised with, e.g. 0.4914,0.4822,0.4465.  [default: the codebases' convention for --dataset]")(f)
    return f


def precision_options(f):
    f = click.option("--zca", "zca", type=float, default=None, metavar="EPS",
                     help="The images are ZCA-whitened (kornia, this eps; 0.1 in MTT and no-distillation): kept as floats and evaluated as they are under a ZCA protocol.  [default: normalised]")(f)
    f = click.option("--precision", type=click.Choice(["uint8", "float16", "float32"]), default=None,
                     help="How to store float images: uint8 (quantised, clipping recorded) or float16/float32 in their own space (float32 is bit-exact).  [default: uint8; float32 with --zca]")(f)
    return f


def report(path: Path) -> None:
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    prov, labels = manifest["provenance"], manifest["labels"]
    given = prov.get("labels_given") or labels.get("source")
    click.echo(f"imported {manifest['name']} {manifest['version']}: {manifest['counts']['samples']} images, {labels['kind']} labels (given as {given})")
    if "targets" in prov:
        click.echo(f"classes: {prov['targets']['rule']}" + (f" ({prov['targets']['note']})" if "note" in prov["targets"] else f" from {prov['targets']['file']}"))
    if "quantisation" in prov:
        q = prov["quantisation"]
        if "stored" in q:  # float images kept in their own space
            click.echo(f"stored as {q['stored']} in {q['space']} space: max change {q['max_abs_error']:g}" + (f"; learned lr {manifest['learned_lr']:g}" if "learned_lr" in manifest else ""))
        else:
            click.echo(f"uint8 quantisation: max error {q['max_abs_error_in_range'] * 255:.2f}/255 in range; {q['clipped_fraction']:.2%} of values clipped to [0, 1]")
    click.echo(f"content hash {manifest['content_hash']}")
    click.echo(str(path))


@click.group("import")
def import_cmd():
    """Turn a third-party distilled set (MTT, DATM, DC/DM, SRe2L/RDED, RaT-BPTT, tensors) into an artifact.

    Tensors are read with torch.load(weights_only=True) only; normalised images are de-normalised with
    --mean/--std and stored as uint8, the error recorded.

    \b
    Examples:
      slc import mtt images_best.pt labels_best.pt --dataset cifar10 --out artifacts/mtt-c10-ipc10
      slc import tensor images.pt soft_labels.pt --dataset cifar10 --targets class-major
    """


@import_cmd.command("mtt")
@click.argument("images", type=click.Path(path_type=Path))
@click.argument("labels", type=click.Path(path_type=Path))
@click.option("--lr-file", type=click.Path(path_type=Path), default=None, help="lr_best.pt: the learned student learning rate, recorded in the recipe.  [default: none]")
@dataset_options
@normalisation_options
@precision_options
@output_options
def mtt(images, labels, lr_file, dataset, data_root, mean, std, precision, zca, out, name, version, force):
    """MTT/TESLA/DATM: IMAGES (images_best.pt) and LABELS (labels_best.pt, hard or soft).

    \b
    Examples:
      slc import mtt images_best.pt labels_best.pt --dataset cifar10 --lr-file lr_best.pt
      slc import mtt images_zca_best.pt labels_best.pt --dataset cifar100 --mean 0,0,0 --std 1,1,1 --name datm-c100-ipc10   # un-whitened: [0, 1] pixels
      slc import mtt images_best.pt labels_best.pt --dataset cifar10 --zca 0.1 --lr-file lr_best.pt   # a --zca run, kept in ZCA space
    """
    from sl_compiler.importers import import_mtt

    report(import_mtt(images, labels, lr_file=lr_file, dataset=dataset, data_root=data_root, mean=mean, std=std, out=out, name=name, version=version, force=force, precision=precision, zca=zca))


@import_cmd.command("dc")
@click.argument("result", type=click.Path(path_type=Path))
@click.option("--experiment", default=0, show_default=True, type=int, help="Which experiment of the res_*.pt to import.")
@dataset_options
@normalisation_options
@output_options
def dc(result, experiment, dataset, data_root, mean, std, out, name, version, force):
    """DC/DSA/DM: a res_*.pt file of [images, labels] pairs.

    \b
    Examples:
      slc import dc res_DM_CIFAR10_ConvNet_10ipc.pt --dataset cifar10
      slc import dc res_DC_MNIST_ConvNet_1ipc.pt --dataset mnist --experiment 2
    """
    from sl_compiler.importers import import_dc

    report(import_dc(result, experiment=experiment, dataset=dataset, data_root=data_root, mean=mean, std=std, out=out, name=name, version=version, force=force))


@import_cmd.command("tensor")
@click.argument("images", type=click.Path(path_type=Path))
@click.argument("labels", type=click.Path(path_type=Path))
@click.option(
    "--targets",
    default=None,
    help="The class of each image: class-major ([0]*ipc + [1]*ipc + ..., DD-Ranking's order), argmax (each soft label's "
    "most likely class), or FILE (.pt tensor or .npy array of N class indices).  "
    "[default: hard labels are the classes; soft labels are class-major when N is a multiple of the class count]",
)
@dataset_options
@normalisation_options
@precision_options
@output_options
def tensor(images, labels, targets, dataset, data_root, mean, std, precision, zca, out, name, version, force):
    """A plain (N, C, H, W) IMAGES tensor (normalised float or uint8) and (N,) or (N, C) LABELS.

    The rule that gave each image its class is recorded in the manifest (provenance.targets).

    \b
    Examples:
      slc import tensor images.pt soft_labels.pt --dataset cifar10                # DD-Ranking's class-major sets
      slc import tensor images.pt soft_labels.pt --dataset cifar10 --targets classes.npy
      slc import tensor images.pt logits.pt --dataset cifar100 --targets argmax
    """
    from sl_compiler.importers import import_tensor

    report(import_tensor(images, labels, dataset=dataset, targets=targets, data_root=data_root, mean=mean, std=std, out=out, name=name, version=version, force=force, precision=precision, zca=zca))


@import_cmd.command("h5")
@click.argument("file", type=click.Path(path_type=Path))
@dataset_options
@normalisation_options
@output_options
def h5(file, dataset, data_root, mean, std, out, name, version, force):
    """RaT-BPTT: an .h5 FILE with a 'data' dataset (needs h5py).

    \b
    Examples:
      slc import h5 IPC_10.h5 --dataset cifar10
      slc import h5 IPC_1.h5 --dataset cifar100 --out artifacts/ratbptt-c100-ipc1
    """
    from sl_compiler.importers import import_h5

    report(import_h5(file, dataset=dataset, data_root=data_root, mean=mean, std=std, out=out, name=name, version=version, force=force))


@import_cmd.command("imagefolder")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--teacher", required=True, help="Teacher reference that labels the images, e.g. resnet18@43 or 'convnet_d3@20#0-4'.")
@click.option("--temperature", default=1.0, show_default=True, type=float, help="Softmax temperature of the teacher's labels.")
@click.option("--topk", default=None, type=int, help="Store only the k largest probabilities.  [default: dense]")
@click.option("--batch-size", default=256, show_default=True, type=int, help="Teacher inference batch size.")
@dataset_options
@experts_option
@device_option
@output_options
def imagefolder(folder, teacher, temperature, topk, batch_size, dataset, data_root, experts_dir, device, out, name, version, force):
    """SRe2L/RDED: FOLDER of class sub-folders of images, labelled by --teacher.

    \b
    Examples:
      slc import imagefolder syn_data --dataset imagenet --data-root DATA --teacher resnet18@43
      slc import imagefolder syn_data --dataset cifar10 --teacher 'convnet_d3@20#0-4' --topk 5
    """
    from sl_compiler.importers import import_imagefolder

    report(
        import_imagefolder(
            folder, dataset=dataset, teacher=teacher, data_root=data_root, experts=experts_dir, temperature=temperature, topk=topk,
            device=device, batch_size=batch_size, out=out, name=name, version=version, force=force,
        )
    )


@import_cmd.command("parquet")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--split", default="train", show_default=True, help="Which split's shards to read from a folder ([data/]<split>-*.parquet).")
@click.option("--soft-column", default=None, help="Column of soft labels (a list of floats per row); default: the only such column.")
@click.option("--soft-kind", type=click.Choice(["auto", "probs", "logits"]), default="auto", show_default=True, help="What the soft labels are; auto: rows >= 0 summing to 1 are probabilities, else logits.")
@click.option("--temperature", default=1.0, show_default=True, type=float, help="Softmax temperature for logits.")
@dataset_options
@normalisation_options
@output_options
def parquet(path, split, soft_column, soft_kind, temperature, dataset, data_root, mean, std, out, name, version, force):
    """A distilled set published as parquet: PATH (a .parquet file or a folder of shards) with image bytes, a label and optionally soft labels.

    \b
    Examples:
      slc import parquet ./sre2l-in1k-ipc10 --dataset imagenet --out sre2l-ipc10
      slc import parquet set.parquet --dataset cifar10 --soft-kind logits --temperature 4
    """
    from sl_compiler.importers import import_parquet

    report(
        import_parquet(
            path, dataset=dataset, data_root=data_root, mean=mean, std=std, split=split, soft_column=soft_column, soft_kind=soft_kind,
            temperature=temperature, out=out, name=name, version=version, force=force,
        )
    )
