"""ZCA whitening: the streamed fit against a direct eigendecomposition, batch invariance, whiteness, cache, errors."""

from __future__ import annotations

import pytest
import torch

from sl_compiler.data import load_dataset
from sl_compiler.data import zca as Z
from sl_compiler.errors import DataError

# D = 3 * 8 * 8 = 192 features, N = 400 images: a full-rank covariance, a fit in milliseconds
SPEC = "synthetic:classes=4,size=8,train=100,test=10"
EPS64 = torch.finfo(torch.float64).eps
EPS32 = torch.finfo(torch.float32).eps


@pytest.fixture(scope="module")
def train():
    return load_dataset(SPEC, split="train")


def direct(train, eps):
    """kornia's arithmetic on the whole split at once, in float64: mean, covariance, T."""
    x = train.pixels.reshape(len(train), -1).double() / 255
    mu = x.mean(0)
    xc = x - mu
    cov = xc.T @ xc / (len(x) - 1)
    u, s, _ = torch.linalg.svd(cov)  # kornia takes the SVD
    return mu, cov, (u * torch.rsqrt(s + eps)) @ u.T


def test_streamed_fit_matches_the_direct_eigendecomposition(train):
    mu, cov, t = direct(train, Z.DEFAULT_EPS)
    m, c, n = Z.covariance(train, batch_size=37)
    assert n == len(train)
    # float64 sums of N terms of size <= 1: error <= N * eps64 per entry (a loose bound of the summation)
    bound = len(train) * EPS64
    assert (m - mu).abs().max() <= bound
    assert (c - cov).abs().max() <= bound
    zca = Z.fit(train, batch_size=37)
    # T is kept in float32: a relative rounding of eps32 on entries of size <= 1/sqrt(eps) (the largest eigenvalue of T)
    scale = 1 / Z.DEFAULT_EPS**0.5
    assert (zca.transform.double() - t).abs().max() <= 4 * EPS32 * scale
    assert (zca.mean.double() - mu).abs().max() <= EPS32
    assert torch.equal(zca.transform, zca.transform.T) or (zca.transform - zca.transform.T).abs().max() <= 4 * EPS32 * scale


def test_one_batch_or_many_give_the_same_fit_up_to_float64_rounding(train):
    one = Z.covariance(train, batch_size=len(train))
    many = Z.covariance(train, batch_size=7)
    bound = len(train) * EPS64  # each of the N additions rounds once, relative to values <= 1
    assert (one[0] - many[0]).abs().max() <= bound
    assert (one[1] - many[1]).abs().max() <= bound
    a, b = Z.fit(train, batch_size=len(train)), Z.fit(train, batch_size=7)
    assert a.id == b.id  # the id names the inputs of the fit, not its rounding


def test_whitened_training_data_has_identity_covariance_shrunk_by_eps(train):
    zca = Z.fit(train)
    x = train.pixels.reshape(len(train), -1).double() / 255
    w = (x - zca.mean.double()) @ zca.transform.double()
    cw = (w - w.mean(0)).T @ (w - w.mean(0)) / (len(w) - 1)
    # T C T = U diag(S / (S + eps)) U^T: the identity with each eigen-direction shrunk by S / (S + eps)
    s = zca.eigenvalues
    u = torch.linalg.eigh(Z.covariance(train)[1])[1]
    expected = (u * (s / (s + Z.DEFAULT_EPS))) @ u.T
    assert (cw - expected).abs().max() <= 1e-4  # float32 T applied in float64: ~ D * eps32 * |T|^2 * |C|
    # with a negligible eps the whitened covariance is the identity
    tiny = Z.fit(train, eps=1e-9)
    w = (x - tiny.mean.double()) @ tiny.transform.double()
    cw = (w - w.mean(0)).T @ (w - w.mean(0)) / (len(w) - 1)
    strong = s > 1e-3  # directions the data spans well; near-null ones are amplified noise
    proj = u[:, strong].T @ cw @ u[:, strong]
    assert (proj - torch.eye(int(strong.sum()), dtype=torch.float64)).abs().max() <= 1e-2


def test_apply_is_x_minus_mean_times_t(train):
    zca = Z.fit(train)
    x = train.pixels[:5]
    out = Z.Inputs((0.5,) * 3, (0.25,) * 3, zca)(x)
    want = ((x.reshape(5, -1).float() / 255 - zca.mean) @ zca.transform).reshape(x.shape)
    assert out.shape == x.shape and torch.equal(out, want)
    pieces = torch.cat([zca.apply(part.float() / 255) for part in (x[:1], x[1:3], x[3:])])
    assert torch.equal(pieces, zca.apply(x.float() / 255))  # a batch of one rounds as in a batch of five
    floats = torch.randn(2, 3, 8, 8, dtype=torch.float16)
    assert torch.equal(Z.Inputs((0.5,) * 3, (0.25,) * 3, zca)(floats), floats.float())  # float sets are inputs already


def test_cache_returns_the_same_fit(train, tmp_path, monkeypatch):
    monkeypatch.setenv("SLC_CACHE", str(tmp_path))
    first = Z.zca_for(train)
    assert list((tmp_path / "data").glob("zca-*.safetensors"))
    again = Z.zca_for(train)
    assert again.sha256 == first.sha256 and again.id == first.id
    assert Z.zca_for(train, eps=0.2).id != first.id


def test_no_training_split_or_bad_eps_is_a_one_line_error(train):
    test = load_dataset(SPEC, split="test")
    with pytest.raises(DataError, match="fitted on the training split"):
        Z.zca_for(test)
    with pytest.raises(DataError, match="eps"):
        Z.fit(train, eps=0)
    with pytest.raises(DataError, match="needs a 49152 x 49152 covariance.*small images"):
        Z.zca_for(load_dataset("synthetic:classes=2,size=128,train=1,test=1", split="train"))


def test_check_record_names_the_mismatch(train):
    zca = Z.fit(train)
    Z.check_record(zca.record(), zca, "teacher", "fix")
    Z.check_record(None, None, "teacher", "fix")
    with pytest.raises(DataError, match="ZCA-whitened inputs.*does not whiten"):
        Z.check_record(zca.record(), None, "teacher convnet_d3@1#0", "use a zca protocol")
    with pytest.raises(DataError, match="another ZCA fit"):
        Z.check_record({**zca.record(), "eps": 0.2}, zca, "teacher", "fix")
