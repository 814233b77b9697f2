"""slc publish --results against the fake Hub (tests/hubserver.py): the card lists the evaluation,
the Hub copy pulls and verifies, and results of another artifact are refused before any request."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from hubserver import CliClient, HubServer
from test_card import _result

TOKEN = "hf_fakeTokenForTheCardTests456"


def write_tiny(out: Path) -> Path:
    from sl_compiler.artifact import write_artifact

    g = torch.Generator().manual_seed(0)
    info = {"name": "synthetic", "classes": [f"c{i}" for i in range(4)], "mean": [0.5] * 3, "std": [0.25] * 3}
    return write_artifact(
        out, name="tiny", version="1.0.0", dataset=info, images=torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8, generator=g),
        targets=torch.arange(4).repeat(2), source_ids=[str(i) for i in range(8)], labels={"probs": torch.softmax(torch.randn(8, 4, generator=g), 1)},
        shard_samples=4,
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("card-hub")


@pytest.fixture(scope="module")
def hub():
    with HubServer(TOKEN) as fake:
        yield fake


@pytest.fixture(scope="module")
def client(hub, workdir):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_ENDPOINT=hub.endpoint, HF_TOKEN=TOKEN, HF_HOME=str(workdir / "hf-home"), HF_HUB_DISABLE_XET="1",
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", SLC_PROGRESS="0")
    c = CliClient(env, cwd=str(workdir))
    yield c
    c.close()


@pytest.fixture(scope="module")
def artifact(workdir) -> Path:
    return write_tiny(workdir / "tiny-1.0.0")


@pytest.fixture(scope="module")
def results(artifact, workdir) -> Path:
    path = workdir / "results.json"
    path.write_text(json.dumps(_result(json.loads((artifact / "manifest.json").read_text()))))
    return path


def test_publish_with_results_puts_them_on_the_hub_card_and_the_copy_verifies(hub, client, artifact, results, workdir):
    before = {p.relative_to(artifact).as_posix(): p.read_bytes() for p in artifact.rglob("*") if p.is_file()}
    published = client.slc("publish", artifact, "--repo", "tester/with-results", "--results", results)
    assert published["rc"] == 0, published
    assert published["stderr"] == "published 6 files to tester/with-results as v1.0.0\n"
    files = hub.head("tester/with-results").files
    card = files["README.md"].decode()
    assert "| `sl` (this artifact's stored labels) | 68.75 ± 6.25 | 0, 1 | 62.50, 75.00 | 0.01 |" in card
    assert hub.validate_card(card) == [] and yaml.safe_load(card[4 : card.index("\n---", 4)])["task_categories"] == ["image-classification"]
    doc = json.loads(files["eval/results.json"])
    assert doc["kind"] == "slc-card-results/1" and "path" not in doc["results"][0]["artifacts"][0]
    assert files["grid.png"] == (artifact / "grid.png").read_bytes() and files["manifest.json"] == (artifact / "manifest.json").read_bytes()
    assert {p.relative_to(artifact).as_posix(): p.read_bytes() for p in artifact.rglob("*") if p.is_file()} == before  # the artifact is untouched
    pulled = client.slc("pull", "tester/with-results@v1.0.0", "--out", workdir / "pulled")
    assert pulled["rc"] == 0, pulled
    assert (workdir / "pulled" / "eval" / "results.json").read_bytes() == files["eval/results.json"]
    verified = client.slc("verify", "hf://tester/with-results@v1.0.0")
    assert verified["rc"] == 0 and verified["stdout"].startswith("ok: tiny 1.0.0"), verified
    inspected = client.slc("inspect", workdir / "pulled")
    assert inspected["rc"] == 0 and "eval results" in inspected["stdout"]


def test_results_of_another_artifact_are_refused_before_any_request(hub, client, artifact, workdir):
    other = workdir / "other.json"
    manifest = json.loads((artifact / "manifest.json").read_text())
    other.write_text(json.dumps(_result({**manifest, "name": "other", "content_hash": "a" * 64})))
    requests = len(hub.log)
    result = client.slc("publish", artifact, "--repo", "tester/refused", "--results", other)
    assert result["rc"] == 2
    lines = result["stderr"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the results evaluated other@1.0.0 (aaaaaaaa), not tiny@1.0.0")
    assert len(hub.log) == requests


def test_the_token_never_appears(workdir):
    for path in workdir.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
