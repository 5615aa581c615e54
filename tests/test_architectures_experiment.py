"""`lmlab experiment architectures` end to end at a toy size: runs, tables and plots agree."""
import argparse
import json

import pytest

from lmlab.errors import LmlabError
from lmlab.experiments import architectures


def parse(argv):
    p = argparse.ArgumentParser()
    architectures.add_arguments(p)
    return p.parse_args(argv)


def test_toy_run_writes_report_with_measured_rows(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("Some words here, and more words there.\n" * 60, encoding="utf-8")
    args = parse(["--steps", "2", "--variants", "dense,lmu (LF),meta-tokens", "--out", str(tmp_path / "runs"),
                  "--docs", str(tmp_path / "docs"), "--gen-tokens", "5",
                  "--set", f"data.corpus={corpus}", "--set", f"data.cache_dir={tmp_path / 'cache'}",
                  "--set", "model.d_model=16", "--set", "model.context=16", "--set", "train.eval_batches=1"])
    assert architectures.run(args) == 0
    md = (tmp_path / "docs" / "architectures.md").read_text()
    for name, slug in [("dense", "dense"), ("lmu (LF)", "lmu-LF"), ("meta-tokens", "meta-tokens")]:
        res = json.loads((tmp_path / "runs" / f"{slug}.json").read_text())
        assert res["steps"] == 2 and res["params"] > 0 and res["gen_tok_per_s"] > 0
        assert f"| {name} |" in md and f"{res['val_bpb']:.4f}" in md and f"{res['params']:,}" in md
    assert "--steps 2" in md
    for png in ("architectures_bpb.png", "architectures_loss.png"):
        assert (tmp_path / "docs" / png).read_bytes()[:4] == b"\x89PNG"


def test_unknown_variant_is_a_clear_error(tmp_path):
    with pytest.raises(LmlabError, match="unknown variant"):
        architectures.run(parse(["--variants", "dense,nope", "--out", str(tmp_path)]))
