"""The plumbing the experiments share (lmlab/experiments/common.py)."""
import json
import math

import pytest

from lmlab import config
from lmlab.errors import LmlabError
from lmlab.experiments import common


def test_split_text_at_a_space_or_a_line_start():
    text = "abcdef " * 100  # a space at 6, 13, ..., 699
    head, tail = common.split_text(text, 0.1, at="space")  # the cut at 630 moves back to the space at 629
    assert head + tail == text and len(head) == 629 and tail.startswith(" ")
    lines = "".join(f"line {i}\n" for i in range(100))
    head, tail = common.split_text(lines, 0.15, at="line")
    assert head + tail == lines and head.endswith("\n") and tail == "".join(f"line {i}\n" for i in range(86, 100))
    assert common.split_text("no newline at all", 0.5, at="line") == ("no newline at all", "")
    assert common.split_text("x" * 300, 0.5, at="space") == ("x" * 150, "x" * 150)  # no space: the plain cut


def test_results_json_is_strict_with_nan_as_null(tmp_path):
    path = common.write_json(tmp_path / "sub" / "r.json", {"a": math.nan, "b": [1.5, math.inf, (2, -math.inf)],
                                                           "c": {"d": "é"}})
    text = path.read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text and "é" in text
    assert json.loads(text) == {"a": None, "b": [1.5, None, [2, None]], "c": {"d": "é"}}
    assert common.read_json(path) == json.loads(text)
    assert not list(tmp_path.glob("sub/*.tmp"))
    with pytest.raises(LmlabError, match="no results"):
        common.read_json(tmp_path / "missing.json")


def test_configured_copies_and_rejects_unknown_fields():
    base = config.Config()
    cfg = common.configured(base, model=dict(d_model=64, pattern="MF"), train=dict(seed=7))
    assert (cfg.model.d_model, cfg.model.pattern, cfg.train.seed) == (64, "MF", 7)
    assert (base.model.d_model, base.model.pattern, base.train.seed) == (128, "AF", 1337)  # the base is untouched
    assert cfg.model.n_layers == base.model.n_layers and cfg.data == base.data
    with pytest.raises(TypeError):
        common.configured(base, model=dict(d_modle=64))
    assert common.as_settings({"model": {"meta_tokens": 4, "meta_rate": 0.05, "bias": True}}) == [
        "model.meta_tokens=4", "model.meta_rate=0.05", "model.bias=true"]
    # what as_settings prints is what --set reads back
    again = config.apply_overrides(config.Config(), common.as_settings({"model": {"d_model": 64, "pattern": "MF"}}))
    assert (again.model.d_model, again.model.pattern) == (64, "MF")


def test_comma_lists_name_what_is_wrong():
    assert common.names(" a, b ,,", ("a", "b", "c"), "--x", "part") == ["a", "b"]
    with pytest.raises(LmlabError, match=r"--x: unknown part 'z'; valid: a, b"):
        common.names("a,z", ("a", "b"), "--x", "part")
    assert common.numbers("1, 2.5", float, "--n") == [1.0, 2.5]
    with pytest.raises(LmlabError, match="--n must be a comma-separated list of numbers"):
        common.numbers("1,two", int, "--n")


def test_curves_from_metrics_jsonl(tmp_path):
    rows = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5, "val_loss": 2.7, "val_bpb": 3.9, "elapsed_s": 6},
            {"step": 3, "loss": 2.0}, {"step": 4, "loss": 1.5, "val_loss": 2.2, "val_bpb": 3.1, "elapsed_s": 12}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert common.curve(tmp_path, "loss") == [(1, 3.0), (2, 2.5), (3, 2.0), (4, 1.5)]
    assert common.curve(tmp_path, "val_bpb") == [(2, 3.9), (4, 3.1)]
    assert common.last_record(tmp_path, "val_loss")["elapsed_s"] == 12
    assert common.last_record(tmp_path, "nothing") == {}


def test_machine_record():
    m = common.machine()
    assert m["cpus"] >= 1 and m["cpu_threads"] >= 1 and m["torch"]
    assert common.describe(m).startswith(f"{m['arch']} with {m['cpus']} CPUs, ")
