"""Preprocessing as data: decode = torchvision's Resize(resize) + CenterCrop(crop) on the PIL image, exactly."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from sl_compiler.data import Preprocess, load_dataset
from sl_compiler.data.decode import decode_files, decode_image
from sl_compiler.data.base import FileSource
from sl_compiler.data.preprocess import crop_box, resized_size
from sl_compiler.errors import DataError

# odd sizes and aspect ratios: portrait, landscape, square, exactly the resize, short sides above
# and below it, and crops whose margin is odd (CenterCrop's rounding) in both directions
SIZES = [(301, 257), (257, 301), (500, 375), (375, 500), (256, 256), (224, 224), (333, 199), (199, 333), (227, 1001), (1001, 227), (225, 300), (97, 61)]


def jpeg(w: int, h: int, seed: int, mode: str = "RGB") -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3) if mode == "RGB" else (h, w), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def torchvision_eval(data: bytes, resize: int, crop, mode: str = "RGB") -> torch.Tensor:
    """The reference: torchvision's PIL path, as torchvision's references/classification evaluate."""
    t = transforms.Compose([transforms.Resize(resize, interpolation=transforms.InterpolationMode.BILINEAR), transforms.CenterCrop(crop), transforms.PILToTensor()])
    return t(Image.open(io.BytesIO(data)).convert(mode))


@pytest.mark.parametrize("w,h", SIZES)
def test_imagenet_decode_equals_torchvision_resize_256_centercrop_224(w, h):
    data = jpeg(w, h, w * 7 + h)
    assert torch.equal(decode_image(data, (3, 224, 224), resize=256), torchvision_eval(data, 256, 224))


@pytest.mark.parametrize("w,h", [(33, 47), (47, 33), (32, 32), (31, 64), (64, 63)])
@pytest.mark.parametrize("resize,crop", [(32, (32, 32)), (36, (32, 32)), (40, (32, 24)), (37, (29, 31))])
def test_any_resize_and_crop_equals_torchvision(w, h, resize, crop):
    data = jpeg(w, h, w + h)
    assert torch.equal(decode_image(data, (3, *crop), resize=resize), torchvision_eval(data, resize, crop))


def test_grey_images_and_one_channel_equal_torchvision():
    data = jpeg(301, 257, 1, mode="L")
    assert torch.equal(decode_image(data, (3, 224, 224), resize=256), torchvision_eval(data, 256, 224))
    assert torch.equal(decode_image(data, (1, 224, 224), resize=256), torchvision_eval(data, 256, 224, mode="L"))


def test_batch_decode_matches_single_decode_and_the_fast_path_only_takes_exact_sizes(monkeypatch):
    blobs = [jpeg(32, 32, 1), jpeg(40, 33, 2), jpeg(32, 32, 3)]
    source = FileSource(ids=[f"{i}.jpg" for i in range(3)], exts=["jpg"] * 3, read=blobs.__getitem__)
    for resize in (32, 36):
        out, bad = decode_files(source, [0, 1, 2], (3, 32, 32), resize=resize)
        assert not bad and torch.equal(out, torch.stack([torchvision_eval(b, resize, 32) for b in blobs]))


def test_arithmetic_is_torchvisions():
    # Resize: short side = size, long side = int(size * long / short) (truncated, not rounded)
    assert resized_size(500, 375, 256) == (341, 256) and resized_size(375, 500, 256) == (256, 341)
    assert resized_size(1001, 227, 256) == (1128, 256)  # 256 * 1001 / 227 = 1128.8
    # CenterCrop: top = int(round((H - h) / 2.0)), Python's round: halves go to even
    assert crop_box(341, 256, 224, 224) == (58, 16, 282, 240)  # (341 - 224) / 2 = 58.5 -> 58
    assert crop_box(227, 227, 224, 224) == (2, 2, 226, 226)  # 1.5 -> 2


def test_imagenet_defaults_and_info_records_the_preprocess(tmp_path):
    from sl_compiler.data.fake import FakeSpec, write_fake

    root = write_fake(tmp_path / "in", "imagefolder", FakeSpec(classes=2, per_class=2, val_per_class=1, min_size=230, max_size=300))
    train = load_dataset("imagenet", root, "train", in_memory=False)
    assert train.shape == (3, 224, 224) and train.resize == 256
    info = train.info()
    assert info["preprocess"] == {"resize": 256, "crop": [224, 224], "interpolation": "bilinear", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert Preprocess.from_info(info) == train.preprocess
    assert torch.equal(train.images([1])[0], torchvision_eval(train.encoded(1)[0], 256, 224))
    small = load_dataset("imagenet", root, "test", resolution=112, in_memory=False)
    assert small.resize == 128 and small.shape == (3, 112, 112)  # 112 / 0.875: the same crop fraction
    own = load_dataset("imagenet", root, "test", resolution=112, resize=112, in_memory=False)
    assert own.info()["preprocess"]["resize"] == 112
    with pytest.raises(DataError, match="resize 200 is smaller than the crop 224x224"):
        load_dataset("imagenet", root, "train", resize=200)
    # other datasets resize to the crop
    folder = load_dataset(f"imagefolder:{root}", split="train", resolution=64, in_memory=False)
    assert folder.resize == 64 and folder.info()["preprocess"]["crop"] == [64, 64]


def test_older_records_without_preprocess_read_as_resize_to_the_crop():
    assert Preprocess.from_info({"resolution": [32, 32], "mean": [0.5], "std": [0.2]}) == Preprocess(32, (32, 32), (0.5,), (0.2,))


def test_the_decoded_cache_is_keyed_by_the_preprocess(tmp_path, monkeypatch):
    from sl_compiler.data import encoded
    from sl_compiler.data.fake import FakeSpec, write_fake

    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "cache"))
    root = write_fake(tmp_path / "f", "imagefolder", FakeSpec(classes=2, per_class=3, val_per_class=1, min_size=40, max_size=60))
    a = load_dataset(f"imagefolder:{root}", split="train", resolution=32, resize=32, in_memory=True)
    b = load_dataset(f"imagefolder:{root}", split="train", resolution=32, resize=48, in_memory=True)
    assert not torch.equal(a.pixels, b.pixels)
    monkeypatch.setattr(encoded, "decode_all", lambda *a, **k: pytest.fail("decoded although cached"))
    assert torch.equal(load_dataset(f"imagefolder:{root}", split="train", resolution=32, resize=48, in_memory=True).pixels, b.pixels)
