"""The lm-evaluation-harness backend: log-likelihoods equal the model's own, rolling bits per byte
equal `lmlab eval`, a multiple-choice score reproduced by hand, generation with stop sequences,
and the three ways in (lmlab eval --harness, simple_evaluate, lm-eval's own command line)."""
import json
import os
import subprocess
import sys
import tempfile
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from lmlab.cli import main
from lmlab.errors import LmlabError

lm_eval = pytest.importorskip("lm_eval")  # the optional extra: pip install 'lmlab[eval]'
os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="hf-datasets-"))  # never ~/.cache

from lmlab.checkpoint import load_model  # noqa: E402
from lmlab.eval.harness import LmlabLM, evaluate, task_specs  # noqa: E402


def req(*args):
    return SimpleNamespace(args=args)


def own_loglikelihood(model, ids, n_cont):
    """The model's own sum of log-probabilities of the last n_cont ids, in one plain forward."""
    x = torch.tensor([ids])
    with torch.no_grad():
        logp = F.log_softmax(model(x[:, :-1])[0].float(), -1)[0]
    picked = logp[torch.arange(len(ids) - 1), x[0, 1:]][-n_cont:]
    greedy = bool((logp.argmax(-1)[-n_cont:] == x[0, 1:][-n_cont:]).all())
    return float(picked.double().sum()), greedy


@pytest.fixture(scope="module")
def tiny(tiny_run):
    model, tok, _ = load_model(tiny_run)
    return model.eval(), tok


def test_loglikelihood_is_the_models_own_sum_of_log_probabilities(tiny):
    model, tok = tiny
    lm = LmlabLM(model=model, tokenizer=tok, batch_size=3)
    long_context = "ROMEO: " * 30 + "O"  # longer than the 64-token window: cut from the left
    pairs = [("To be, or not", " to be"), ("", "First Citizen"), (long_context, " and more"), ("A", "B")]
    got = lm.loglikelihood([req(c, x) for c, x in pairs], disable_tqdm=True)
    for (ctx, cont), (ll, greedy) in zip(pairs, got):
        c, x = tok.encode(ctx) or [tok.eot_id], tok.encode(cont)
        want, want_greedy = own_loglikelihood(model, (c + x)[-(model.cfg.context + 1):], len(x))
        assert ll == pytest.approx(want, rel=1e-5, abs=1e-4) and greedy == want_greedy
    one_by_one = LmlabLM(model=model, tokenizer=tok, batch_size=1).loglikelihood([req(c, x) for c, x in pairs],
                                                                                 disable_tqdm=True)
    assert [g for _, g in one_by_one] == [g for _, g in got]
    assert [ll for ll, _ in one_by_one] == pytest.approx([ll for ll, _ in got], rel=1e-5)


def test_rolling_windows_predict_every_token_once_from_end_of_text(tiny):
    model, tok = tiny
    text = "Now is the winter of our discontent\nMade glorious summer by this sun of York;\n" * 3
    ids = tok.encode(text)
    assert len(ids) % model.cfg.context  # a short last window too
    (total,) = LmlabLM(model=model, tokenizer=tok).loglikelihood_rolling([req(text)])
    C = model.cfg.context
    stream = [tok.eot_id] + ids
    by_hand = 0.0
    for start in range(0, len(ids), C):  # window k predicts ids[kC : kC + C]; the last one sees C tokens
        end = min(start + C, len(ids))
        lo = max(0, end - C)
        by_hand += own_loglikelihood(model, stream[lo:end + 1], end - start)[0]
    assert total == pytest.approx(by_hand, rel=1e-5)


def test_rolling_bits_per_byte_equal_lmlab_eval(capsys, tmp_path, tiny_run, tiny, shared_data):
    _, tok = tiny
    text = (shared_data / "tinyshakespeare.txt").read_text()[-3001:] + " é 🦄"  # bytes, not characters, count
    assert len(tok.encode(text)) % 64
    (tmp_path / "doc.txt").write_text(text, encoding="utf-8")
    (tmp_path / "doc.jsonl").write_text(json.dumps({"text": text}) + "\n", encoding="utf-8")
    (tmp_path / "rolling.yaml").write_text(
        "task: doc_rolling\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {tmp_path / 'doc.jsonl'}\noutput_type: loglikelihood_rolling\ntest_split: test\n"
        "doc_to_text: ''\ndoc_to_target: '{{text}}'\nmetric_list:\n  - metric: bits_per_byte\n")
    assert main(["eval", str(tiny_run), "--data", str(tmp_path / "doc.txt")]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["eval", str(tiny_run), "--harness", str(tmp_path / "rolling.yaml")]) == 0
    out = json.loads(capsys.readouterr().out)
    bpb = out["results"]["doc_rolling"]["bits_per_byte,none"]
    assert plain["bytes"] == len(text.encode("utf-8")) and plain["tokens"] == len(tok.encode(text))
    assert bpb == pytest.approx(plain["bpb"], rel=1e-12)  # the same logits; only the float64 sums' order differs


def test_multiple_choice_reproduced_by_hand(tiny):
    model, tok = tiny
    out = evaluate(LmlabLM(model=model, tokenizer=tok), ["lmlab_continuation"], limit=12)
    res = out["results"]["lmlab_continuation"]
    from lmlab.data.corpora import cache_root
    docs = [json.loads(x) for x in (cache_root() / "harness" / "continuation" / "test.jsonl").read_text().splitlines()]
    acc = acc_norm = 0
    for d in docs[:12]:
        c = tok.encode(d["input"])
        lls = []
        for choice in d["choices"]:
            x = tok.encode(choice)
            lls.append(own_loglikelihood(model, (c + x)[-(model.cfg.context + 1):], len(x))[0])
        gold = d["choices"].index(d["target"])
        acc += lls.index(max(lls)) == gold
        normed = [v / len(ch) for v, ch in zip(lls, d["choices"])]
        acc_norm += normed.index(max(normed)) == gold
    assert res["sample_len"] == 12
    assert res["acc,none"] == acc / 12 and res["acc_norm,none"] == acc_norm / 12


class Script(torch.nn.Module):
    """A stub whose next token depends only on the last one: x -> a -> b -> newline -> c -> end."""

    def __init__(self, tok):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.cfg = SimpleNamespace(context=8)
        self.vocab = tok.vocab_size
        nxt = {ord("x"): ord("a"), ord("a"): ord("b"), ord("b"): ord("\n"), ord("\n"): ord("c"), ord("c"): tok.eot_id}
        self.table = torch.full((self.vocab,), ord("x"))
        for k, v in nxt.items():
            self.table[k] = v

    def forward(self, idx, targets=None, cache=None):
        return F.one_hot(self.table[idx], self.vocab).float() * 10, None


def test_generate_until_stops_at_stop_strings_end_of_text_and_the_budget():
    from lmlab.tokenizers.byte import ByteTokenizer

    tok = ByteTokenizer()
    lm = LmlabLM(model=Script(tok), tokenizer=tok, batch_size=2)
    got = lm.generate_until([
        req("x", {"until": ["\n"]}), req("x", {"until": "b"}), req("x", {"until": []}),
        req("x", {"until": ["zz"], "max_gen_toks": 2}), req("", {"until": ["c"]}),
        req("x" * 20, {"until": ["\n"], "max_gen_toks": 30}),  # a prompt longer than the window slides
    ])
    assert got == ["ab", "a", "ab\nc", "ab", "xab\n", "ab"]
    with pytest.raises(LmlabError, match="greedily"):
        lm.generate_until([req("x", {"do_sample": True, "temperature": 0.7})])


def test_simple_evaluate_with_an_lmlab_model_on_every_shipped_task(tiny):
    model, tok = tiny
    names = ["lmlab_continuation", "lmlab_rolling", "lmlab_assoc_recall", "lmlab_listops"]
    out = evaluate(LmlabLM(model=model, tokenizer=tok), names, limit=3)
    res = out["results"]
    assert set(res) == set(names)
    assert 0 <= res["lmlab_assoc_recall"]["exact_match,first_symbol"] <= 1
    assert res["lmlab_listops"]["sample_len"] == 3 and 0 < res["lmlab_rolling"]["bits_per_byte,none"] < 10
    from lm_eval.tasks import TaskManager

    from lmlab.eval.tasks.harness_data import prepare

    direct = lm_eval.simple_evaluate(model=LmlabLM(model=model, tokenizer=tok), tasks=["lmlab_listops"], limit=3,
                                     task_manager=TaskManager(include_path=str(prepare()), include_defaults=False))
    assert direct["results"]["lmlab_listops"]["acc,none"] == res["lmlab_listops"]["acc,none"]


def test_unknown_tasks_and_hub_tasks_fail_with_one_line(capsys, tmp_path, tiny_run):
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(tmp_path), include_defaults=False)
    with pytest.raises(LmlabError, match="unknown harness task 'nosuch'; lmlab's own: lmlab_assoc_recall"):
        task_specs(["nosuch"], tm)
    with pytest.raises(LmlabError, match="not found"):
        task_specs([str(tmp_path / "missing.yaml")], tm)
    (tmp_path / "hub.yaml").write_text("task: hub_task\ndataset_path: someone/some-hub-dataset\n"
                                       "output_type: loglikelihood_rolling\ntest_split: test\n"
                                       "doc_to_text: ''\ndoc_to_target: '{{text}}'\n")
    code = main(["eval", str(tiny_run), "--harness", str(tmp_path / "hub.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: a task could not load its data offline") and err.count("\n") == 1


def test_harness_without_lm_eval_says_how_to_install(capsys, monkeypatch, tiny_run):
    for name in [m for m in sys.modules if m == "lm_eval" or m.startswith("lm_eval.")]:
        monkeypatch.setitem(sys.modules, name, None)  # importing lm_eval now fails
    monkeypatch.delitem(sys.modules, "lmlab.eval.harness")
    code = main(["eval", str(tiny_run), "--harness", "lmlab_rolling"])
    err = capsys.readouterr().err
    assert code == 2 and "pip install 'lmlab[eval]'" in err and err.count("\n") == 1


def test_lm_evals_own_command_line_runs_model_lmlab(tmp_path, tiny_run):
    env = {**os.environ, "LMLAB_CACHE": os.environ["LMLAB_CACHE"]}
    proc = subprocess.run([sys.executable, "-m", "lmlab.eval.harness", "run", "--model", "lmlab",
                           "--model_args", f"run={tiny_run}", "--tasks", "lmlab_listops", "--limit", "2",
                           "--output_path", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "lmlab_listops" in proc.stdout and "acc" in proc.stdout
