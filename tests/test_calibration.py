"""Expected calibration error and the reliability diagram (lmlab/eval/calibration.py, `lmlab eval --calibration`)."""
import json

import numpy as np
import pytest

from lmlab.cli import main
from lmlab.eval.calibration import ece


def test_calibrated_predictor_has_ece_near_zero():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, 400_000)
    hit = rng.uniform(0, 1, conf.size) < conf  # right with exactly the stated probability
    assert ece(conf, hit)["ece"] < 0.005


def test_constant_overconfident_predictor():
    conf = np.full(10, 0.9)
    hit = np.array([1] * 6 + [0] * 4)
    r = ece(conf, hit, n_bins=10)
    assert r["ece"] == pytest.approx(0.3, abs=1e-12)
    (used,) = [b for b in r["bins"] if b["count"]]
    assert (used["lo"], used["count"], used["accuracy"]) == (pytest.approx(0.8), 10, 0.6)


def test_bin_edges():
    r = ece([0.0, 0.5, 1.0], [0, 1, 1], n_bins=2)
    assert [b["count"] for b in r["bins"]] == [2, 1]
    assert r["ece"] == pytest.approx((2 / 3) * abs(0.5 - 0.25) + 0.0)


def test_eval_cli_calibration(tiny_run, tmp_path, capsys):
    png = tmp_path / "fig" / "rel.png"
    assert main(["eval", str(tiny_run), "--max-tokens", "512", "--calibration", "--calibration-png", str(png)]) == 0
    out = json.loads(capsys.readouterr().out)
    cal = out["calibration"]
    assert 0 <= cal["ece"] <= 1 and cal["n"] == 512 and sum(b["count"] for b in cal["bins"]) == 512
    assert png.read_bytes()[:4] == b"\x89PNG"
