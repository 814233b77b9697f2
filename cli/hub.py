"""``slc publish`` and ``slc pull``: artifacts to and from the Hugging Face Hub (sl_compiler.hub)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("publish")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--repo", required=True, help="Dataset repo OWNER/NAME; created if missing (required).")
@click.option("--tag", default=None, help="Tag for the commit; an existing tag never moves.  [default: v<artifact version>]")
@click.option("--private", is_flag=True, help="Create the repo private (an existing repo keeps its visibility).")
@click.option("--results", "results", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="slc evaluate results (.json) of this artifact to list in the Hub card, uploaded as eval/results.json; repeatable.  [default: none]")
def publish_cmd(artifact: Path, repo: str, tag: str | None, private: bool, results: tuple[Path, ...]):
    """Verify ARTIFACT, upload it to the Hub in one commit, tag it, and print the commit URL.

    The token comes from huggingface_hub (HF_TOKEN or `hf auth login`); slc never prints or stores it.
    With --results the Hub card lists the evaluation (the artifact's own files do not change), and
    the Hub copy still verifies.

    \b
    Examples:
      slc publish artifacts/c10-ipc10 --repo OWNER/c10-ipc10            # tagged v<version>
      slc publish artifacts/c10-ipc10 --repo OWNER/c10-ipc10 --tag v1.0.0-rc.1 --private
      slc publish artifacts/c10-ipc10 --repo OWNER/c10-ipc10 --results results/c10-ipc10.json
    """
    from sl_compiler.hub import publish

    result = publish(artifact, repo, tag=tag, private=private, results=list(results))
    click.echo(f"published {len(result.files)} files to {result.repo} as {result.tag}", err=True)
    click.echo(result.commit_url)


@click.command("pull")
@click.argument("spec")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Copy the artifact to this folder (new or empty), verified again there.  [default: print the Hub cache's folder]")
def pull_cmd(spec: str, out: Path | None):
    """Download OWNER/NAME[@REV] (a tag, branch or commit), verify every file, print its local path.

    With HF_HUB_OFFLINE=1 it serves the local Hub cache. hf://OWNER/NAME@REV works wherever a command
    takes an artifact, so a pull is only needed for a copy of your own.

    \b
    Examples:
      slc pull OWNER/c10-ipc10@v1.0.0
      slc pull OWNER/c10-ipc10@v1.0.0 --out artifacts/c10-ipc10
    """
    from sl_compiler.hub import pull

    click.echo(pull(spec, out=out))
