"""benchmarks/run_all.py: each result's row says the settings it ran with."""

from __future__ import annotations

import json

from test_benchmarks import run_all


def test_settings_come_from_the_result_then_its_command_then_this_run():
    by_settings = {"settings": {"ipc": 10, "epochs": [1, 2], "model": "convnet_d3"}, "command": "ignored", "machine": "2 CPU cores (AMD EPYC)",
                   "figures": [{"name": "acc", "value": 41.0, "unit": "%", "target": None}, {"name": "hard", "value": 31.9, "unit": "%", "target": None}]}
    by_text = {"settings": "300 epochs | seeds 0-1", "figures": [{"name": "x", "value": 1.0, "unit": "x", "target": ">= 0.9"}]}
    by_command = {"command": "python benchmarks/eval_throughput.py --quick", "figures": [{"name": "y", "value": 1.1, "unit": "x", "target": ">= 0.9"}]}
    by_run = {"figures": [{"name": "z", "value": 2.0, "unit": "x", "target": None}]}
    runs = {"d": {"status": "ok", "command": "benchmarks/d.py --quick", "wall_s": 1.0}}
    lines = run_all.table({"a": by_settings, "b": by_text, "c": by_command, "d": by_run}, runs).splitlines()
    assert lines[0] == "| benchmark | settings | figure | value | unit | target | met |"
    assert lines[2] == '| a | epochs=[1, 2], ipc=10, model=convnet_d3; on 2 CPU cores (AMD EPYC) | acc | 41.0 | % |  |  |'
    assert lines[3] == "| a |  | hard | 31.9 | % |  |  |"  # once per benchmark
    assert lines[4] == "| b | 300 epochs \\| seeds 0-1 | x | 1 | x | >= 0.9 | yes |"
    assert lines[5] == "| c | `python benchmarks/eval_throughput.py --quick` | y | 1.1 | x | >= 0.9 | yes |"
    assert lines[6] == "| d | `python benchmarks/d.py --quick` | z | 2 | x |  |  |"


def test_a_rebuilt_table_does_not_claim_this_machine_measured_it(tmp_path, monkeypatch):
    results = tmp_path / "results"
    results.mkdir()
    (results / "x.json").write_text(json.dumps({"command": "python benchmarks/x.py", "figures": [{"name": "r", "value": 1.0, "unit": "x", "target": None}]}))
    monkeypatch.setattr(run_all, "RESULTS", results)
    monkeypatch.setattr(run_all, "README", tmp_path / "README.md")
    assert run_all.main(["--no-run"]) == 0
    text = (tmp_path / "README.md").read_text()
    assert "Rebuilt from benchmarks/results/*.json" in text and "Machine:" not in text
    assert "| x | `python benchmarks/x.py` | r |" in text
