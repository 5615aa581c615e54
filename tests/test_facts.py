"""The arbitrary-facts corpus and its measures (lmlab/eval/facts.py)."""
import math
from types import SimpleNamespace

import pytest
import torch

from lmlab.eval import facts


def test_corpus_repeats_each_fact_as_stated():
    fs = facts.make_facts(5, seed=1)
    assert len(fs) == 20 and len({f.name for f in fs}) == 20
    sentences = facts.fact_sentences(fs)
    assert len(sentences) == 5 * (1 + 2 + 5 + 20)
    for f in fs:
        said = [s for s in sentences if f.name in s]
        assert len(said) == f.repeats and all(f.city in s and str(f.year) in s for s in said)
    text = facts.mixed_corpus(fs, "real line one\nreal line two\n", lines_per_fact=2)
    assert text.count("real line one") == len(sentences)
    assert facts.monofact_rates(fs) == {"of_facts": 0.25, "good_turing": 5 / 140}


def test_evaluate_facts_on_a_model(tiny_run):
    from lmlab.checkpoint import load_model

    model, tok, _ = load_model(tiny_run)
    fs = facts.make_facts(2, seed=0)
    r = facts.evaluate_facts(model, tok, fs)
    assert r["facts"] == 8 and set(r["accuracy_by_repeats"]) == {"1", "2", "5", "20"}
    assert r["bound"] == r["monofact_rate"]["of_facts"] - r["miscalibration_ece"]
    assert r["bound_holds"] == (r["hallucination_rate"] >= r["bound"])
    assert all(0 <= e["p"] <= 1 for e in r["examples"])


class Scripted(torch.nn.Module):
    """After `prompt`, predicts the bytes of `script` one by one, each with probability ~0.9."""

    def __init__(self, prompt: str, script: str):
        super().__init__()
        self.cfg = SimpleNamespace(context=256)
        self.start, self.script = len(prompt.encode()), list(script.encode())
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        logits = torch.zeros(1, x.shape[1], 300)
        for t in range(x.shape[1]):
            k = t + 1 - self.start
            if 0 <= k < len(self.script):
                logits[0, t, self.script[k]] = math.log(0.9 * 299 / 0.1)  # softmax gives it 0.9
        return logits, None


def test_answer_stops_at_the_city_and_scores_only_it():
    from lmlab.tokenizers.byte import ByteTokenizer

    prompt = "Kalo Venmar was born in"
    said, p = facts.answer(Scripted(prompt, " Lisbon in 1901."), ByteTokenizer(), prompt)
    assert said == "Lisbon" and p == pytest.approx(0.9 ** 7, rel=1e-4)  # " Lisbon": 7 bytes
    said, _ = facts.answer(Scripted(prompt, " Oslo, a native"), ByteTokenizer(), prompt)
    assert said == "Oslo"
    assert facts.STOP.split("Lisbon in 1901.")[0] == "Lisbon" and facts.STOP.split("Oslo, a")[0] == "Oslo"
