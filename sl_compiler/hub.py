"""Publish artifacts to the Hugging Face Hub and pull them back, verified.

``publish`` refuses an artifact that fails ``verify``, creates the dataset repo if needed, uploads
exactly the artifact's files (manifest, card, grid, shards, and evaluation results when given) in one commit with the ``huggingface_hub``
client, removes files a previous version left behind, and tags the commit with the artifact's
version (``v1.0.0``); a tag never moves. ``pull`` downloads ``OWNER/NAME[@REV]`` (REV: a tag, a
branch or a commit sha) into the Hub cache, or copies it to ``--out``, and checks every file
against the manifest's sha256 before returning; with ``HF_HUB_OFFLINE=1`` it serves the cache.

``hf://OWNER/NAME@REV`` is resolved here, above the artifact package (which reads local folders
only): commands that take an artifact call :func:`open_artifact`, :func:`verify_artifact` or
:func:`local_artifact`.

Tokens come from huggingface_hub's own sources (``HF_TOKEN``, ``hf auth login``); slc never reads,
prints or writes one. Every client failure becomes a one-line :class:`HubError`.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import HubError, VerifyError

REPO_TYPE = "dataset"
SPEC_RE = re.compile(r"^(?:hf://)?(?:datasets/)?([A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@([^@\s]+))?$")
TAG_RE = re.compile(r"^(?!.*\.\.)(?!.*//)[A-Za-z0-9][A-Za-z0-9._/+-]{0,127}$")
ARTIFACT_PATTERNS = ["manifest.json", "README.md", "grid.png", "eval/results.json", "data/train-*.tar"]


@dataclass
class Published:
    repo: str
    tag: str
    commit: str
    commit_url: str
    files: list[str]


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``OWNER/NAME[@REV]`` or ``hf://OWNER/NAME[@REV]`` -> (repo id, revision or None)."""
    m = SPEC_RE.match(str(spec).strip())
    if m is None:
        raise HubError(f"bad Hub reference {spec!r}", "write OWNER/NAME, OWNER/NAME@v1.0.0 or hf://OWNER/NAME@REV")
    return m.group(1), m.group(2)


def is_hub_uri(path) -> bool:
    return str(path).startswith("hf://")


def local_artifact(path_or_uri: str | Path) -> Path:
    """A local artifact folder: ``hf://OWNER/NAME@REV`` is pulled into the Hub cache and verified; a path is returned as is."""
    return pull(str(path_or_uri)) if is_hub_uri(path_or_uri) else Path(path_or_uri)


def open_artifact(path_or_uri: str | Path, verify: bool = False):
    """``artifact.load`` for a folder or ``hf://OWNER/NAME@REV``: where a command takes an artifact, it calls this.

    A Hub artifact is always verified (every file against the manifest) before it is opened.
    """
    from .artifact import load

    if is_hub_uri(path_or_uri):
        return load(pull(str(path_or_uri)))
    return load(path_or_uri, verify=verify)


def verify_artifact(path_or_uri: str | Path):
    """``artifact.verify`` for a folder or ``hf://OWNER/NAME@REV`` (the Hub copy as the cache holds it)."""
    from .artifact import verify

    if not is_hub_uri(path_or_uri):
        return verify(path_or_uri)
    return _fetch(str(path_or_uri))[1]


def artifact_files(manifest: dict) -> list[str]:
    """The files an artifact consists of, as repo paths: manifest, card, grid (when recorded), then shards in order."""
    return ["manifest.json", "README.md", *(["grid.png"] if "grid" in manifest else []), *(s["path"] for s in manifest["shards"])]


def publish(path: str | Path, repo: str, tag: str | None = None, private: bool = False, results: list[str | Path] = ()) -> Published:
    """Upload the artifact at ``path`` to dataset repo ``repo`` in one commit and tag it.

    ``results`` (``slc evaluate`` result files) are uploaded as ``eval/results.json`` (their rows for
    this artifact) and listed in the card's "Evaluation results" section; the artifact itself is
    not changed, and the Hub copy verifies (docs/artifact-format.md, "Evaluation results on the Hub").
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants

    from .artifact import verify

    path = Path(path)
    repo_id, rev = parse_spec(repo)
    if rev is not None:
        raise HubError(f"--repo {repo!r} names a revision", "pass OWNER/NAME and the tag with --tag")
    if constants.HF_HUB_OFFLINE:
        raise HubError(f"cannot publish to {repo_id}: HF_HUB_OFFLINE=1 forbids uploads", f"unset HF_HUB_OFFLINE when online, then rerun slc publish {path} --repo {repo_id}")
    try:
        verify(path)
    except VerifyError as exc:
        raise HubError(f"refusing to publish {path}: it fails verification ({exc.problem})", exc.fix or "rebuild the artifact") from None
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    tag = tag or f"v{manifest['version']}"
    if not TAG_RE.match(tag):
        raise HubError(f"bad tag {tag!r}", "use a tag such as v1.0.0 (letters, digits, '.', '-', '_', '+', '/')")
    uploads = _card_files(path, manifest, results)  # before any request: bad results fail here
    files = [*artifact_files(manifest), *(f for f in uploads if f not in ("manifest.json", "README.md"))]
    api = HfApi()
    with hub_errors(repo_id, None, upload=f"slc publish {path} --repo {repo_id}"):
        api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
        tags = {t.name: t.target_commit for t in api.list_repo_refs(repo_id, repo_type=REPO_TYPE).tags}
        if tag in tags:
            raise HubError(f"{repo_id} already has tag {tag} (commit {tags[tag][:12]}); tags never move", "bump the artifact's version, or pass another --tag")
        stale = [p for p in api.list_repo_files(repo_id, repo_type=REPO_TYPE) if p not in files and p != ".gitattributes"]
        operations = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=uploads.get(f) or str(path / f)) for f in files]
        operations += [CommitOperationDelete(path_in_repo=p) for p in stale]
        info = api.create_commit(
            repo_id,
            operations,
            commit_message=f"slc publish {manifest['name']} {manifest['version']}",
            commit_description=f"content hash {manifest['content_hash']}\nwritten by slc {manifest['slc_version']}",
            repo_type=REPO_TYPE,
        )
        api.create_tag(repo_id, tag=tag, revision=info.oid, tag_message=f"{manifest['name']} {manifest['version']}", repo_type=REPO_TYPE)
    return Published(repo=repo_id, tag=tag, commit=info.oid, commit_url=info.commit_url, files=files)


def _card_files(path: Path, manifest: dict, results: list[str | Path]) -> dict[str, bytes]:
    """README.md and eval/results.json as they are uploaded: the card with the given results, or the
    results a pulled copy already carries (kept as they are), or nothing to change."""
    from .artifact import format as fmt
    from .artifact.card import card_with_results, card_without_results, results_document

    held = path / fmt.EVAL_RESULTS
    if not results:
        return {fmt.EVAL_RESULTS: held.read_bytes()} if held.is_file() else {}
    from .evaluate.tables import load_results

    doc = results_document(load_results(list(results)), manifest)
    card = (path / fmt.CARD).read_bytes()
    if held.is_file():  # a pulled copy with results: start again from the writer's card
        card = card_without_results(card, held.read_bytes(), manifest)
    return {fmt.CARD: card_with_results(card, doc, manifest), fmt.EVAL_RESULTS: doc}


def pull(spec: str, out: str | Path | None = None) -> Path:
    """Download ``OWNER/NAME[@REV]``, verify every file, and return its folder (the cache, or ``out``)."""
    from .artifact import verify

    if out is not None:
        out = Path(out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise HubError(f"{out} already exists", "pick another --out, or remove it first")
    folder, _ = _fetch(spec)
    return folder if out is None else _copy_out(folder, out, verify)


def _fetch(spec: str):
    """Download ``spec`` into the Hub cache and verify it there: (folder, VerifyReport)."""
    from huggingface_hub import snapshot_download

    from .artifact import verify

    repo_id, rev = parse_spec(spec)
    rev = rev or "main"
    with hub_errors(repo_id, rev):
        folder = Path(snapshot_download(repo_id, repo_type=REPO_TYPE, revision=rev, allow_patterns=ARTIFACT_PATTERNS))
    if not (folder / "manifest.json").is_file():
        raise HubError(f"{repo_id}@{rev} holds no manifest.json: it is not an slc artifact", "pull a repo that slc publish wrote")
    try:
        report = verify(folder, allow_links=True)  # the cache links each file to its blob
    except VerifyError as exc:
        _evict(folder, exc.path)
        raise VerifyError(
            f"{repo_id}@{rev}: {exc.problem}",
            "the copy on the Hub does not match its manifest (the bad file was dropped from the cache); pull again, and report it to the repo owner if it persists",
            path=exc.path,
        ) from None
    return folder, report


def _copy_out(folder: Path, out: Path, verify) -> Path:
    """Copy a verified snapshot to ``out`` through a temporary sibling, verify the copy, rename it."""
    from .artifact import atomic

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic.OutLock(out):
        atomic.clean_stale(out)  # copies a killed pull left behind
        tmp = atomic.owned_name(out)
        try:
            for file in sorted(p for p in folder.rglob("*") if p.is_file()):
                target = tmp / file.relative_to(folder)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file, target)
            verify(tmp)
            with contextlib.suppress(OSError):
                out.rmdir()  # empty when checked before the download; if it filled since, the rename refuses
            atomic.rename_noreplace(tmp, out)
        except FileExistsError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise HubError(f"{out} appeared while the copy was made", "pick another --out") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out


def _evict(folder: Path, rel: str | None) -> None:
    """Drop a file that failed verification from the Hub cache (its link and blob), so a new pull fetches it again."""
    if not rel:
        return
    link = folder / rel
    with contextlib.suppress(OSError):
        blob = link.resolve()
        link.unlink()
        if blob != link and blob.is_file():
            blob.unlink()


@contextlib.contextmanager
def hub_errors(repo_id: str, rev: str | None, upload: str | None = None):
    """Turn huggingface_hub and network failures into one-line HubErrors that say what to do.

    ``upload`` is the command that uploads (for publish), so an offline failure says to rerun it.
    """
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id}@{rev}" if rev else repo_id
    try:
        yield
    except RevisionNotFoundError:
        raise HubError(f"{repo_id} has no revision {rev!r}{_known_refs(repo_id)}", "pass a tag, branch or commit sha that exists") from None
    except GatedRepoError:
        raise HubError(f"{repo_id} is gated and this account has no access", "request access on its Hub page, then retry") from None
    except RepositoryNotFoundError:
        raise HubError(
            f"dataset repo {repo_id} not found on {constants.ENDPOINT} (or it is private and no valid token was sent)",
            "check the name; for a private repo run `hf auth login` or set HF_TOKEN",
        ) from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        if upload:
            raise HubError(f"cannot upload to {repo_id}: offline (HF_HUB_OFFLINE=1)", f"unset HF_HUB_OFFLINE when online, then rerun {upload}") from None
        if constants.HF_HUB_OFFLINE:
            raise HubError(f"{where} is not in the local Hub cache and HF_HUB_OFFLINE=1", "pull it once online, or unset HF_HUB_OFFLINE") from None
        raise HubError(f"cannot reach {constants.ENDPOINT} and {where} is not in the local Hub cache", "check the network or HF_ENDPOINT, then retry") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        detail = (exc.server_message or str(exc)).strip().splitlines()[0][:200]
        fix = "check that your token has write access (`hf auth login` or HF_TOKEN)" if status in (401, 403) else "retry later; if it persists, check the repo on the Hub"
        raise HubError(f"the Hub refused {where} (HTTP {status}: {detail})", fix) from None
    except _transport_errors() as exc:
        if upload:
            raise HubError(
                f"cannot reach {constants.ENDPOINT} to upload {repo_id} ({type(exc).__name__})",
                f"check the network or HF_ENDPOINT, then rerun {upload} (a commit is all or nothing and the tag comes last, so a rerun is safe)",
            ) from None
        raise HubError(f"cannot reach {constants.ENDPOINT} ({type(exc).__name__})", "check the network or HF_ENDPOINT, then retry") from None
    except ValueError as exc:  # the client's own checks, e.g. README metadata the Hub rejects
        raise HubError(f"{where}: {' '.join(str(exc).split())[:300]}", "fix the artifact card (README.md) front matter, or report a bug") from None


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP library's connection errors: httpx2 for huggingface_hub 1.x-2.x, httpx or requests before."""
    errors: list[type[BaseException]] = []
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "ConnectionError")):
        with contextlib.suppress(ImportError):
            errors.append(getattr(__import__(module), name))
    return tuple(errors)


def _known_refs(repo_id: str) -> str:
    """`` (it has tags v1.0.0; branches main)`` for an error message; empty when the listing fails."""
    from huggingface_hub import HfApi

    try:
        refs = HfApi().list_repo_refs(repo_id, repo_type=REPO_TYPE)
    except Exception:  # noqa: BLE001 - best effort: the error being reported is the missing revision
        return ""
    tags = ", ".join(t.name for t in refs.tags) or "none"
    branches = ", ".join(b.name for b in refs.branches) or "none"
    return f" (it has tags {tags}; branches {branches})"
