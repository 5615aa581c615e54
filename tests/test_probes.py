"""Linear probes per layer (lmlab/analysis/probes.py, `lmlab probe`)."""
import json

import torch

from lmlab.analysis.probes import fit_logistic, predict, probe_layers
from lmlab.cli import main


def test_probe_separates_linearly_separable_classes_and_not_noise():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(300) % 3
    signal = torch.randn(300, 8, generator=g) + 4 * torch.nn.functional.one_hot(y, 8).float()
    noise = torch.randn(300, 8, generator=g)
    r = probe_layers(torch.stack([noise, signal]), y.tolist(), [0, 1])
    assert r["accuracy"]["1"] == 1.0
    assert r["accuracy"]["0"] < 0.6 and r["test"] == 90 and r["classes"] == 3
    params = fit_logistic(signal, y, 3)
    assert torch.equal(predict(params, signal), y)


def test_probe_cli(tiny_run, capsys):
    assert main(["probe", str(tiny_run), "--task", "language", "--languages", "en,ru", "--per-class", "20"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["labels"] == ["en", "ru"] and list(out["accuracy"]) == ["0", "1", "2"]
    assert out["train"] + out["test"] == 40
    assert main(["probe", str(tiny_run), "--task", "language", "--layer", "7"]) == 2
    assert "out of range; the model has layers 0..2" in capsys.readouterr().err
