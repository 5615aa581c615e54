"""LM fusion: n-best rescoring (lmlab rescore), shallow fusion, the char n-gram baseline."""
import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from lmlab.infer.fusion import END, TransformerScorer, rescore, shallow_fusion
from lmlab.infer.ngram import CharNgramLM


class DictLM:
    """log p(text) from a table (unknown texts: -10 per word); records what it was asked."""

    def __init__(self, table):
        self.table, self.asked = table, []

    def logprob(self, texts):
        self.asked.extend(texts)
        return [self.table.get(t, -10.0 * len(t.split())) for t in texts]


def test_ngram_distribution_sums_to_one():
    lm = CharNgramLM("the cat sat on the mat. the dog sat on the log.", order=4)
    for history in ("", "th", "the ", "zzz", "og."):
        seen = [c for c in lm.counts[""]]
        total = sum(lm.prob(history, c) for c in seen) + lm.prob(history, "\u2603")  # + the unseen class
        assert total == pytest.approx(1.0, abs=1e-12)
    a, b = lm.logprob(["the cat sat", "the cta sat"])
    assert a > b


def test_rescore_adds_weighted_lm_and_word_bonus():
    hyps = [{"text": "a b", "score": -1.0}, {"text": "a b c", "score": -1.5}]
    lm = DictLM({"a b": -5.0, "a b c": -4.0})
    out = rescore(hyps, lm, weight=0.5, bonus=0.25)
    assert [h["total"] for h in out["hypotheses"]] == [-1.0 + 0.5 * -5.0 + 0.25 * 2, -1.5 + 0.5 * -4.0 + 0.25 * 3]
    assert out["chosen"] == "a b c"
    assert rescore(hyps, lm, weight=0.0)["chosen"] == "a b"


def test_shallow_fusion_lm_weight_changes_the_word_and_sees_only_whole_words():
    spell = {"": {"t": 0.0}, "t": {"h": 0.0}, "th": {"e": 0.0}, "the": {"i": math.log(0.6), "r": math.log(0.4)},
             "thei": {"r": 0.0}, "ther": {"e": 0.0}, "their": {" ": 0.0}, "there": {" ": 0.0},
             "their ": {"i": 0.0}, "there ": {"i": 0.0}, "their i": {"s": 0.0}, "there i": {"s": 0.0},
             "their is": {END: 0.0}, "there is": {END: 0.0}}
    am = lambda prefixes: [spell[p] for p in prefixes]
    lm = DictLM({"their": -6.0, "there": -3.0, "their is": -12.0, "there is": -4.0})
    assert shallow_fusion(am, lm, weight=0.0)[0].text == "their is"  # the AM alone
    best = shallow_fusion(am, lm, weight=1.0)[0]
    assert best.text == "there is" and best.lm == -4.0 and best.am == pytest.approx(math.log(0.4))
    assert set(lm.asked) <= {"their", "there", "their is", "there is"}  # never a cut word such as "the"


def test_transformer_scorer_is_the_sum_of_token_log_probabilities(tiny_run):
    from lmlab.checkpoint import load_model

    model, tok, _ = load_model(tiny_run)
    scorer = TransformerScorer(model, tok, batch_size=2)
    texts = ["To be, or not", "ROMEO:", "a"]
    got = scorer.logprob(texts)
    for text, value in zip(texts, got):
        ids = [tok.eot_id] + tok.encode(text)
        with torch.no_grad():
            logp = F.log_softmax(model(torch.tensor([ids[:-1]]))[0][0].float(), -1)
        want = float(logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum())
        assert value == pytest.approx(want, abs=1e-4)


def lmlab(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "lmlab.cli", *args], capture_output=True, text=True, input=stdin)


def test_rescore_cli_keeps_the_order_and_adds_lm_and_total(tiny_run, tmp_path):
    nbest = tmp_path / "nbest.jsonl"
    lists = [{"id": "b", "hypotheses": [{"text": "ROMEO: good night", "score": -2.0},
                                        {"text": "RxMqO: gxod nzght", "score": -1.9}]},
             {"id": "a", "hypotheses": [{"text": "To be", "score": 0}]}]
    nbest.write_text("".join(json.dumps(r) + "\n" for r in lists))
    done = lmlab("rescore", str(tiny_run), "--nbest", str(nbest), "--weight", "0.5", "--length-bonus", "1")
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["id"] for r in out] == ["b", "a"]
    for h in out[0]["hypotheses"]:
        assert h["total"] == pytest.approx(h["score"] + 0.5 * h["lm"] + len(h["text"].split()))
    assert out[0]["chosen"] == max(out[0]["hypotheses"], key=lambda h: h["total"])["text"]
    zero = [json.loads(line) for line in lmlab("rescore", str(tiny_run), "--nbest", str(nbest), "--weight", "0").stdout.splitlines()]
    assert zero[0]["chosen"] == "RxMqO: gxod nzght"  # W = 0: the first-pass score alone


@pytest.mark.parametrize("line, message", [
    ("{not json", "invalid JSON (Expecting property name enclosed in double quotes)"),
    ('{"id": 1}', 'needs a non-empty "hypotheses" list'),
    ('{"id": 1, "hypotheses": [{"text": "a"}]}', 'hypothesis 0 needs a string "text" and a number "score"'),
])
def test_a_malformed_nbest_line_is_named(tiny_run, tmp_path, line, message):
    nbest = tmp_path / "bad.jsonl"
    nbest.write_text('{"id": 0, "hypotheses": [{"text": "a", "score": 0}]}\n' + line + "\n")
    done = lmlab("rescore", str(tiny_run), "--nbest", str(nbest), "--weight", "1")
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {nbest}:2: {message}"
