"""The README's main job, end to end on a tiny synthetic set: every stage leaves its product."""

import json

from click.testing import CliRunner

from cli.main import cli
from sl_compiler.artifact import load, verify
from sl_compiler.demo import run_demo


def test_demo_runs_the_whole_pipeline(tmp_path):
    spec = "synthetic:classes=4,size=16,train=32,test=6"  # two steps per epoch at batch 64: half-epoch checkpoints
    lines = []
    result = run_demo(tmp_path, dataset=spec, ipc=2, student_epochs=2, device="cpu", echo=lines.append)
    text = "\n".join(lines)
    # an expert trajectory with checkpoints, listed
    assert "convnet_d3" in text and "1/4" in text and "4/4" in text
    # a verified artifact labelled by the last checkpoint
    art_path = tmp_path / "artifacts" / "synthetic-ipc2-1.0.0"
    verify(art_path)
    art = load(art_path)
    assert art.ipc == 2 and len(art.keys) == 2 * 4
    assert art.manifest["teachers"][0]["epoch"] == 4
    # the evaluation table against both baselines, also written as JSON
    row = result["artifacts"][0]
    assert {"random-hl", "random-sl"} <= set(row["baselines"])
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert saved["artifacts"][0]["content_hash"] == art.content_hash
    assert "| artifact |" in text


def test_demo_is_a_cli_command():
    assert "demo" in cli.list_commands(None)
    out = CliRunner().invoke(cli, ["demo", "--help"])
    assert out.exit_code == 0 and "--out" in out.output and "--device" in out.output
