"""The data benchmarks (decode_throughput, listing_scale) run end to end on tiny inputs; the decode one compares pixels and keeps its bare loop free of slc code."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_decode_throughput_runs_and_its_bare_loop_uses_no_slc_code(tmp_path, monkeypatch):
    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("decode_throughput", BENCHMARKS / "decode_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "r.json"
    result = bench.main(["--quick", "--classes", "3", "--per-class", "4", "--repeats", "1", "--data", str(tmp_path / "fake"), "--out", str(out)])
    assert result["pixels_identical"] is True and result["settings"]["images"] == 12
    assert json.loads(out.read_text())["figures"][0]["target"] == ">= 0.9"
    source = (BENCHMARKS / "decode_throughput.py").read_text()
    bare = source[source.index("# ---------------------------------------------------------------- the bare loop") : source.index("# ---------------------------------------------------------------- slc")]
    assert "sl_compiler" not in bare and "slc" not in bare.replace("(no slc code below)", "")


def test_listing_scale_runs_and_the_two_layouts_agree(tmp_path, monkeypatch):
    monkeypatch.setenv("SLC_CACHE", str(tmp_path / "cache"))  # the script points it at its own folder; restored after
    spec = importlib.util.spec_from_file_location("listing_scale", BENCHMARKS / "listing_scale.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--classes", "3", "--per-class", "5", "--out", str(tmp_path / "r.json")])
    assert result["files"] == 15 and result["ids_names_bytes"] < result["ids_list_of_str_bytes"]
    assert json.loads((tmp_path / "r.json").read_text())["figures"][0]["unit"] == "s"
