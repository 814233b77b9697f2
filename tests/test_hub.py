"""slc publish / slc pull against a fake Hub on 127.0.0.1, driven by the real huggingface_hub client.

No monkeypatching: the client runs in its own process (HF_ENDPOINT points at the fake server,
HF_TOKEN is the only credential) and speaks real HTTP; the tests read what reached the server.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from hubserver import CliClient, HubServer

TOKEN = "hf_fakeTokenThatMustNeverLeak123"
REPO = "tester/tiny"
OUTPUTS: list[str] = []  # every stdout/stderr the client produced, checked for the token at the end


def write_tiny(out: Path, version: str, shard_samples: int | None) -> Path:
    from sl_compiler.artifact import write_artifact

    g = torch.Generator().manual_seed(0)
    n, classes = 8, 4
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
    probs = torch.softmax(torch.randn(n, classes, generator=g), 1)
    info = {"name": "synthetic", "classes": [f"c{i}" for i in range(classes)], "mean": [0.5] * 3, "std": [0.25] * 3}
    return write_artifact(
        out, name="tiny", version=version, dataset=info, images=images, targets=torch.arange(classes).repeat(2),
        source_ids=[str(i) for i in range(n)], labels={"probs": probs}, shard_samples=shard_samples,
    )


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run(client: CliClient, *argv) -> dict:
    result = client.slc(*argv)
    OUTPUTS.extend([result["stdout"], result["stderr"]])
    return result


def one_line_error(result: dict) -> str:
    lines = result["stderr"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result
    return lines[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hub")


@pytest.fixture(scope="module")
def hub():
    with HubServer(TOKEN) as fake:
        yield fake


def client_env(hub, workdir: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_ENDPOINT=hub.endpoint, HF_TOKEN=TOKEN, HF_HOME=str(workdir / "hf-home"), HF_HUB_DISABLE_XET="1",
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", SLC_PROGRESS="0", **extra)
    return env


@pytest.fixture(scope="module")
def clients(hub, workdir):
    """An online client and an HF_HUB_OFFLINE=1 one sharing its cache, started together (imports overlap)."""
    online = CliClient(client_env(hub, workdir), cwd=str(workdir))
    offline = CliClient(client_env(hub, workdir, HF_HUB_OFFLINE="1"), cwd=str(workdir))
    yield online, offline
    online.close()
    offline.close()


@pytest.fixture(scope="module")
def client(clients):
    return clients[0]


@pytest.fixture(scope="module")
def artifact(workdir) -> Path:
    return write_tiny(workdir / "tiny-1.0.0", "1.0.0", shard_samples=4)


@pytest.fixture(scope="module")
def published(hub, client, artifact) -> dict:
    result = run(client, "publish", artifact, "--repo", REPO)
    assert result["rc"] == 0, result
    return result


def test_publish_uploads_the_artifact_in_one_tagged_commit(hub, artifact, published):
    repo = hub.repo(REPO)
    head = hub.head(REPO)
    assert published["stdout"] == f"{hub.endpoint}/datasets/{REPO}/commit/{head.oid}\n"
    assert set(repo.commits) == {head.oid, head.parent}  # the initial commit, then exactly one
    assert head.title == "slc publish tiny 1.0.0"
    manifest = (artifact / "manifest.json").read_text()
    assert f"content hash {json.loads(manifest)['content_hash']}" in head.description
    assert repo.tags == {"v1.0.0": head.oid} and repo.tag_messages["v1.0.0"] == "tiny 1.0.0"
    assert {p: b for p, b in head.files.items() if p != ".gitattributes"} == files_of(artifact)
    # shards went through the LFS batch API, small files inline as base64 in the commit NDJSON
    keys = {line["value"]["path"]: line["key"] for line in hub.commit_payloads[-1][1:]}
    assert keys == {"manifest.json": "file", "README.md": "file", "grid.png": "file", "data/train-000000.tar": "lfsFile", "data/train-000001.tar": "lfsFile"}
    # every write carried the token from HF_TOKEN
    writes = [entry for entry in hub.log if entry[0] == "POST" and "/api/" in entry[1]]
    assert writes and all(authorised for _, _, authorised in writes)


def test_the_card_is_valid_hub_metadata_that_points_at_the_shards(hub, published):
    assert ("POST", "/api/validate-yaml", True) in hub.log  # the client had the server validate the card
    card = hub.head(REPO).files["README.md"].decode()
    assert card.startswith("---\n")
    meta = yaml.safe_load(card[4 : card.index("\n---", 4)])
    assert hub.validate_card(card) == []
    (config,) = meta["configs"]
    (split,) = config["data_files"]
    shards = [p for p in hub.head(REPO).files if p.endswith(".tar")]
    assert split["split"] == "train" and sorted(fnmatch.filter(hub.head(REPO).files, split["path"])) == sorted(shards) and len(shards) == 2


def test_pull_round_trip_is_byte_identical(hub, client, artifact, published, workdir):
    out = workdir / "pulled"
    result = run(client, "pull", f"{REPO}@v1.0.0", "--out", out)
    assert result["rc"] == 0, result
    assert result["stdout"] == f"{out}\n"
    assert files_of(out) == files_of(artifact)
    assert not list(workdir.glob(".pulled.tmp-*"))
    # the same bytes by commit sha and by branch, from the Hub cache
    for rev in (hub.head(REPO).oid, "main"):
        result = run(client, "pull", f"{REPO}@{rev}")
        assert result["rc"] == 0, result
        cached = Path(result["stdout"].strip())
        assert cached.is_relative_to(workdir / "hf-home") and files_of(cached) == files_of(artifact)


def test_hf_uri_works_where_an_artifact_path_does(client, artifact, published):
    code = "from sl_compiler.hub import open_artifact\na = open_artifact('hf://tester/tiny@v1.0.0')\nprint(a.content_hash, len(a.targets))"
    result = client.python(code)
    OUTPUTS.extend([result["stdout"], result["stderr"]])
    assert result["rc"] == 0, result
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert result["stdout"].split() == [manifest["content_hash"], "8"]


def test_publish_refuses_to_move_a_tag(hub, client, artifact, published):
    before = hub.head(REPO).oid
    result = run(client, "publish", artifact, "--repo", REPO)
    assert result["rc"] == 2
    assert "already has tag v1.0.0" in one_line_error(result)
    assert hub.head(REPO).oid == before and hub.repo(REPO).tags == {"v1.0.0": before}


def test_publish_refuses_an_artifact_that_fails_verify(hub, client, artifact, workdir):
    broken = workdir / "broken"
    shutil.copytree(artifact, broken)
    shard = broken / "data" / "train-000001.tar"
    data = bytearray(shard.read_bytes())
    data[600] ^= 0xFF
    shard.write_bytes(bytes(data))
    requests = len(hub.log)
    result = run(client, "publish", broken, "--repo", "tester/broken")
    assert result["rc"] == 2
    line = one_line_error(result)
    assert "fails verification" in line and "data/train-000001.tar" in line
    assert len(hub.log) == requests  # nothing reached the Hub


def test_a_new_version_replaces_files_and_old_tags_still_pull(hub, client, artifact, published, workdir):
    v2 = write_tiny(workdir / "tiny-1.1.0", "1.1.0", shard_samples=None)  # one shard instead of two
    result = run(client, "publish", v2, "--repo", REPO)
    assert result["rc"] == 0, result
    repo = hub.repo(REPO)
    assert sorted(repo.tags) == ["v1.0.0", "v1.1.0"] and repo.tags["v1.1.0"] == hub.head(REPO).oid
    assert {p for p in hub.head(REPO).files if p != ".gitattributes"} == set(files_of(v2))  # the stale shard is gone
    result = run(client, "pull", f"{REPO}@v1.0.0", "--out", workdir / "old")
    assert result["rc"] == 0 and files_of(workdir / "old") == files_of(artifact)


def test_a_file_tampered_with_on_the_server_fails_verification(hub, client, artifact, workdir):
    result = run(client, "publish", artifact, "--repo", "tester/tampered", "--private")
    assert result["rc"] == 0, result
    assert hub.repo("tester/tampered").private
    path = "data/train-000000.tar"
    good = hub.head("tester/tampered").files[path]
    data = bytearray(good)
    data[700] ^= 0x01  # same size: the client's own size check cannot catch it
    hub.tamper("tester/tampered", path, bytes(data))
    for _ in range(2):
        result = run(client, "pull", "tester/tampered@v1.0.0", "--out", workdir / "tampered")
        assert result["rc"] == 1
        line = one_line_error(result)
        assert line.startswith("error: tester/tampered@v1.0.0: data/train-000000.tar") and "sha256" in line
        assert not (workdir / "tampered").exists()
    # the bad file was not kept in the cache as if it were good: once the server is fixed, a pull heals
    hub.tamper("tester/tampered", path, good)
    result = run(client, "pull", "tester/tampered@v1.0.0", "--out", workdir / "tampered")
    assert result["rc"] == 0 and files_of(workdir / "tampered") == files_of(artifact)


def test_missing_repo_revision_and_bad_specs_are_one_line_errors(client, published):
    result = run(client, "pull", "tester/nope@v1.0.0")
    assert result["rc"] == 2 and "dataset repo tester/nope not found" in one_line_error(result)
    result = run(client, "pull", f"{REPO}@v9.9.9")
    line = one_line_error(result)
    assert result["rc"] == 2 and "has no revision 'v9.9.9'" in line and "v1.0.0" in line
    result = run(client, "pull", f"{REPO}@{'0' * 40}")
    assert result["rc"] == 2 and "has no revision" in one_line_error(result)
    result = run(client, "pull", "not a repo")
    assert result["rc"] == 2 and "bad Hub reference" in one_line_error(result)


def test_offline_pull_serves_the_cache(hub, clients, artifact, published):
    online, offline = clients
    assert run(online, "pull", f"{REPO}@v1.0.0")["rc"] == 0  # online once: now it is cached
    requests = len(hub.log)
    result = run(offline, "pull", f"{REPO}@v1.0.0")
    assert result["rc"] == 0, result
    assert files_of(Path(result["stdout"].strip())) == files_of(artifact)
    result = run(offline, "pull", f"{REPO}@v0.0.1")
    assert result["rc"] == 2 and "HF_HUB_OFFLINE=1" in one_line_error(result)
    assert len(hub.log) == requests  # offline means offline


def test_verify_inspect_and_diff_take_hub_references(client, artifact, published):
    manifest = json.loads((artifact / "manifest.json").read_text())
    result = run(client, "verify", f"hf://{REPO}@v1.0.0")
    assert result["rc"] == 0 and result["stdout"].startswith("ok: tiny 1.0.0: 8 samples"), result
    result = run(client, "inspect", f"hf://{REPO}@v1.0.0", "--json")
    assert result["rc"] == 0 and json.loads(result["stdout"])["content_hash"] == manifest["content_hash"]
    result = run(client, "diff", artifact, f"hf://{REPO}@v1.0.0")
    assert result["rc"] == 0 and "content hashes are equal" in result["stdout"], result


def test_publish_offline_says_what_to_do_and_sends_nothing(hub, clients, artifact):
    offline = clients[1]
    requests = len(hub.log)
    result = run(offline, "publish", artifact, "--repo", "tester/offline")
    assert result["rc"] == 2
    line = one_line_error(result)
    assert "cannot publish to tester/offline: HF_HUB_OFFLINE=1 forbids uploads" in line
    assert f"unset HF_HUB_OFFLINE when online, then rerun slc publish {artifact} --repo tester/offline" in line
    assert len(hub.log) == requests


def test_publish_without_a_connection_names_the_endpoint_and_the_rerun(hub, workdir, artifact):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = client_env(hub, workdir)
    env["HF_ENDPOINT"] = f"http://127.0.0.1:{port}"
    unreachable = CliClient(env, cwd=str(workdir))
    try:
        result = run(unreachable, "publish", artifact, "--repo", "tester/nowhere")
    finally:
        unreachable.close()
    assert result["rc"] == 2
    line = one_line_error(result)
    assert f"cannot reach http://127.0.0.1:{port} to upload tester/nowhere" in line and f"rerun slc publish {artifact} --repo tester/nowhere" in line


def test_the_token_never_appears_in_output_or_files(workdir, published):
    assert OUTPUTS and not any(TOKEN in text for text in OUTPUTS)
    for path in workdir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert TOKEN.encode() not in path.read_bytes(), path
