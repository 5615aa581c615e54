"""The synthetic task suite: generators checked by independent evaluators, determinism, scoring
with stub models (an oracle reading the answer from its input scores 1, a constant model the
frequency of its one answer), and the `lmlab task make` / `lmlab eval --task` command lines."""
import json
import re
import statistics
from types import SimpleNamespace

import pytest
import torch

from lmlab.cli import main
from lmlab.errors import LmlabError
from lmlab.eval import tasks
from lmlab.eval.tasks import score
from lmlab.data.task_files import Example, read_info, read_split
from lmlab.tokenizers.byte import ByteTokenizer

SMALL = ["n_train=40", "n_validation=10", "n_test=30"]


def made(name, tmp_path, extra=()):
    out = tmp_path / name
    tasks.make(name, SMALL + list(extra), out)
    return {s: read_split(out / f"{s}.jsonl") for s in ("train", "validation", "test")}, read_info(out)


# ---- independent evaluators -------------------------------------------------------------

def listops_value(text: str) -> tuple[int, int, int]:
    """(value, depth, most arguments) of an expression, by a stack parser."""
    stack, depth, widest = [["ROOT"]], 0, 0
    for tok in text.split():
        if tok.startswith("["):
            stack.append([tok[1:]])
            depth = max(depth, len(stack) - 1)
        elif tok == "]":
            op, *args = stack.pop()
            widest = max(widest, len(args))
            value = {"MIN": min, "MAX": max, "SM": lambda v: sum(v) % 10,
                     "MED": lambda v: int(statistics.median(v))}[op](args)
            stack[-1].append(value)
        else:
            stack[-1].append(int(tok))
    assert len(stack) == 1 and len(stack[0]) == 2
    return stack[0][1], depth, widest


def test_listops_answers_are_the_values_of_the_trees(tmp_path):
    splits, info = made("listops", tmp_path, ["max_depth=5", "max_args=4", "min_length=5", "max_length=80"])
    assert info.scoring == "choice" and info.choices == [str(d) for d in range(10)]
    depths = set()
    for ex in splits["train"] + splits["test"]:
        value, depth, widest = listops_value(ex.input)
        assert ex.target == str(value) and depth <= 4 and widest <= 4  # operators above max_depth only
        assert 5 <= len(ex.input.split()) <= 80 and re.fullmatch(r"(\[(MIN|MAX|MED|SM)|\]|\d)( \S+)*", ex.input)
        depths.add(depth)
    assert len(depths) > 1
    assert listops_value("[MAX 4 3 [MIN 2 3 ] 1 0 ]")[0] == 4 and listops_value("[MED 2 3 ]")[0] == 2


def test_listops_lra_preset_is_lras_settings():
    s = tasks.get("listops").settings(["preset=lra", "n_test=5"])
    assert (s["max_depth"], s["max_args"], s["min_length"], s["max_length"], s["op_prob"]) == (10, 10, 500, 2000, 0.25)
    assert (s["n_train"], s["n_validation"], s["n_test"]) == (96000, 2000, 5)


@pytest.mark.parametrize("name,queries", [("assoc_recall", 1), ("mqar", 3)])
def test_recall_answers_are_the_bound_values(tmp_path, name, queries):
    splits, _ = made(name, tmp_path, ["vocab=26", "pairs=5", "lengths=10,20", f"queries={queries}"])
    lengths = set()
    for ex in splits["train"] + splits["test"]:
        context, asked = ex.input.split(" ? ")
        words = context.split()
        binding = {}
        for k, v in zip(words[::2], words[1::2]):
            assert binding.setdefault(k, v) == v  # a key is always bound to the same value
        assert len(binding) == 5 and set(binding) <= set("abcdefghijklm") and set(binding.values()) <= set("nopqrstuvwxyz")
        assert ex.target == " ".join(binding[k] for k in asked.split()) and len(asked.split()) == queries
        lengths.add(len(words))
    assert lengths == {10, 20}


def test_induction_answer_follows_the_first_trigger(tmp_path):
    splits, _ = made("induction", tmp_path, ["vocab=8", "lengths=12"])
    for ex in splits["test"]:
        seq = ex.input.split()
        assert len(seq) == 12 and seq[-1] == "@" and seq.count("@") == 2
        assert ex.target == seq[seq.index("@") + 1]


def test_selective_copy_answer_is_the_data_in_order(tmp_path):
    splits, _ = made("selective_copy", tmp_path, ["vocab=5", "tokens=4", "lengths=16"])
    for ex in splits["test"]:
        seq = ex.input.split()
        assert seq[-1] == "=" and len(seq) == 17
        assert ex.target.split() == [w for w in seq[:-1] if w != "."] and len(ex.target.split()) == 4


def test_passkey_answer_is_the_key_in_the_prompt(tmp_path):
    splits, _ = made("passkey", tmp_path, ["digits=6", "lengths=300"])
    for ex in splits["test"]:
        assert re.findall(r"The pass key is (\d+)\. Remember it\.", ex.input) == [ex.target]
        assert ex.input.endswith("What is the pass key? The pass key is") and len(ex.target) == 6


def test_passkey_depth_moves_the_key_in_prompts_shorter_than_two_filler_lines(tmp_path):
    # 190 characters leave under one filler line: placed at line boundaries only, every key sat right
    # after the intro, and a model could learn that position instead of reading the key.
    from lmlab.eval import passkey
    splits, _ = made("passkey", tmp_path, ["lengths=190", "depth=-1", "n_train=200"])
    starts = {ex.input.index("The pass key is ") for ex in splits["train"]}
    assert min(starts) == len(passkey.INTRO) and len(starts) >= 3
    late, _ = made("passkey", tmp_path / "late", ["lengths=190", "depth=0.9", "n_train=20"])
    longest_sentence = max(len(x) + 2 for x in passkey.FILLER.split(". "))
    for ex in late["train"]:
        at = ex.input.index(passkey.needle(ex.target))
        filler = len(ex.input) - len(passkey.INTRO) - len(passkey.needle(ex.target)) - len(passkey.QUESTION) + 1
        assert ex.input[at - 2:at] == ". "  # right after a sentence of the filler
        assert 0 <= 0.9 * filler - (at - len(passkey.INTRO)) < longest_sentence


def _region_texts(shared_data, source):
    if source == "language":
        return {p.stem: p.read_bytes() for p in sorted((shared_data / "multilingual").glob("*.txt"))}
    names = {"frankenstein": "shelley", "jekyll_and_hyde": "stevenson", "tom_sawyer": "twain"}
    out = {names[p.stem]: p.read_bytes() for p in (shared_data / "english-prose").glob("*.txt")}
    out["shakespeare"] = (shared_data / "tinyshakespeare.txt").read_bytes()
    return out


def _split_of(raw: bytes, passage: bytes) -> str:
    at = raw.find(passage)
    assert at >= 0
    frac = at / len(raw), (at + len(passage)) / len(raw)
    return "train" if frac[1] <= 0.6 + 1e-3 else "validation" if 0.6 - 1e-3 <= frac[0] and frac[1] <= 0.8 + 1e-3 \
        else "test" if frac[0] >= 0.8 - 1e-3 else "mixed"


@pytest.mark.parametrize("source", ["language", "author"])
def test_classify_label_is_the_text_the_passage_comes_from(tmp_path, shared_data, source):
    splits, info = made("classify", tmp_path, [f"source={source}", "min_bytes=200", "max_bytes=600"])
    raw = _region_texts(shared_data, source)
    assert info.choices == sorted(raw)
    for split, examples in splits.items():
        for ex in examples:
            passage, cue = ex.input.rsplit("\n", 1)
            assert cue == f"{source}:"
            data = passage.encode()
            holders = [k for k, r in raw.items() if data in r]
            assert holders == [ex.target] and 197 <= len(data) <= 603
            assert _split_of(raw[ex.target], data) == split  # from its split's region only


def test_retrieval_says_yes_exactly_for_one_source(tmp_path, shared_data):
    splits, info = made("retrieval", tmp_path, ["source=author", "min_bytes=100", "max_bytes=300"])
    raw = _region_texts(shared_data, "author")
    answers = []
    for ex in splits["test"] + splits["train"]:
        m = re.fullmatch(r"Document 1:\n(.*)\n\nDocument 2:\n(.*)\n\nSame source\?", ex.input, re.S)
        first, second = (m.group(i).encode() for i in (1, 2))
        a = [k for k, r in raw.items() if first in r]
        b = [k for k, r in raw.items() if second in r]
        assert len(a) == len(b) == 1 and ex.target == ("yes" if a == b else "no")
        if a == b:  # never overlapping
            i, j = raw[a[0]].find(first), raw[a[0]].find(second)
            assert i + len(first) <= j or j + len(second) <= i
        answers.append(ex.target)
    assert info.choices == ["no", "yes"] and 0.25 < answers.count("yes") / len(answers) < 0.75


def test_continuation_items_are_true_continuations_of_held_out_text(tmp_path, shared_data):
    splits, info = made("continuation", tmp_path, ["context_chars=80", "continuation_chars=20"])
    text = (shared_data / "tinyshakespeare.txt").read_text()
    tail = int(len(text) * 0.9)
    assert info.delimiter == "" and info.scoring == "choice"
    for split, examples in splits.items():
        for ex in examples:
            at = text.find(ex.input + ex.target)
            assert at >= 0 and len(ex.choices) == 4 == len(set(ex.choices)) and ex.target in ex.choices
            assert (at >= tail) == (split != "train")


# ---- determinism and splits -------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(tasks.GENERATORS))
def test_same_seed_gives_byte_identical_files(tmp_path, name):
    extra = ["min_bytes=100", "max_bytes=300"] if name in ("classify", "retrieval") else []
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    tasks.make(name, SMALL + extra, a)
    tasks.make(name, SMALL + extra, b)
    tasks.make(name, SMALL + extra + ["seed=1"], c)
    for f in ("train.jsonl", "validation.jsonl", "test.jsonl", "task.json"):
        assert (a / f).read_bytes() == (b / f).read_bytes()
    assert (a / "test.jsonl").read_bytes() != (c / "test.jsonl").read_bytes()
    inputs = {s: {json.loads(x)["input"] for x in (a / f"{s}.jsonl").read_text().splitlines()}
              for s in ("train", "validation", "test")}
    assert not inputs["test"] & inputs["train"] and not inputs["test"] & inputs["validation"]


def test_test_split_does_not_depend_on_the_training_size(tmp_path):
    tasks.make("mqar", SMALL, tmp_path / "a")
    tasks.make("mqar", ["n_train=500", "n_validation=0", "n_test=30"], tmp_path / "b")
    assert (tmp_path / "a" / "test.jsonl").read_bytes() == (tmp_path / "b" / "test.jsonl").read_bytes()


def test_settings_are_checked_before_anything_is_drawn():
    with pytest.raises(LmlabError, match=r"listops: max_depth=0: must be in \[1, 30\]"):
        tasks.get("listops").settings(["max_depth=0"])
    with pytest.raises(LmlabError, match="pairs=20 needs vocab >= 40"):
        tasks.get("assoc_recall").settings(["pairs=20", "vocab=30"])
    with pytest.raises(LmlabError, match="unknown setting 'depth'; valid: preset, seed"):
        tasks.get("listops").settings(["depth=3"])
    with pytest.raises(LmlabError, match="valid values are language, author"):
        tasks.get("classify").settings(["source=poetry"])
    with pytest.raises(LmlabError, match="unknown preset 'big'; valid: lra"):
        tasks.get("listops").settings(["preset=big"])
    with pytest.raises(LmlabError, match="expected comma-separated integers"):
        tasks.get("induction").settings(["lengths=a,b"])
    with pytest.raises(LmlabError, match="known tasks: listops, classify"):
        tasks.get("listopz")


# ---- scoring with stub models -----------------------------------------------------------

SEP = 1  # byte 0x01: the oracle's marker (never in a task's text; padding is 0)


class Oracle(torch.nn.Module):
    """Reads the answer from its input: ids are [answer, SEP, prompt, SEP, ...]; the position
    k after the second SEP predicts answer token k (then end-of-text)."""

    def __init__(self, vocab=257):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.cfg = SimpleNamespace(context=1 << 20, vocab_size=vocab)

    def forward(self, idx, targets=None, cache=None):
        B, T = idx.shape
        logits = torch.zeros(B, T, self.cfg.vocab_size)
        for row in range(B):
            seps = (idx[row] == SEP).nonzero().flatten().tolist()
            if len(seps) < 2:
                continue
            a, b = seps[:2]
            for p in range(b, T):
                logits[row, p, int(idx[row, p - b]) if p - b < a else 256] = 30.0
        return logits, None


class Constant(Oracle):
    def forward(self, idx, targets=None, cache=None):
        return torch.zeros(*idx.shape, self.cfg.vocab_size), None


def with_answer(info, examples):
    return [Example(info.delimiter + e.target + chr(SEP) + e.input + chr(SEP), e.target, e.choices) for e in examples]


@pytest.mark.parametrize("name", sorted(tasks.GENERATORS))
def test_oracle_scores_one_and_constant_scores_its_answers_frequency(tmp_path, name):
    extra = ["min_bytes=100", "max_bytes=300"] if name in ("classify", "retrieval") else []
    splits, info = made(name, tmp_path, extra)
    tok = ByteTokenizer()
    oracle = score.evaluate(Oracle(), tok, info, with_answer(info, splits["test"]))
    assert oracle["accuracy"] == 1.0 and oracle["n"] == 30 and oracle["ci95"][1] == 1.0
    const = score.evaluate(Constant(), tok, info, splits["test"])
    if info.scoring == "choice":  # uniform logits: the candidate with fewest bytes (the first of those) wins
        picks = [min(e.choices or info.choices, key=lambda c: len((info.delimiter + c).encode())) for e in splits["test"]]
        freq = sum(p == e.target for p, e in zip(picks, splits["test"])) / 30
        assert const["accuracy"] == freq
        lo, hi = const["ci95"]
        assert lo <= const["chance"] <= hi or name == "listops"  # ListOps values are far from uniform
    else:  # greedy on uniform logits repeats token 0, never an answer
        assert const["accuracy"] == 0.0
    if name in ("assoc_recall", "mqar", "induction", "selective_copy"):
        assert sum(r["n"] for r in oracle["by_length"]) == 30 and all(r["accuracy"] == 1.0 for r in oracle["by_length"])


def test_wilson_interval():
    assert score.wilson(5, 10) == pytest.approx([0.236593, 0.763407], abs=1e-6)
    assert score.wilson(0, 10) == pytest.approx([0.0, 0.277532], abs=1e-6)
    assert score.wilson(10, 10)[1] == 1.0 and score.wilson(0, 10)[0] == 0.0


# ---- command lines ----------------------------------------------------------------------

def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_task_make_and_eval_task_on_a_run(capsys, tmp_path, tiny_run):
    code, out, _ = run(capsys, "task", "make", "assoc_recall", "--set", "n_train=10", "--set", "n_test=12",
                       "--set", "lengths=16,32", "-o", tmp_path / "ar")
    assert code == 0 and json.loads(out)["sizes"] == {"train": 10, "validation": 200, "test": 12}
    code, out, _ = run(capsys, "eval", tiny_run, "--task", tmp_path / "ar")
    result = json.loads(out)
    assert code == 0 and result["task"] == "assoc_recall" and result["n"] == 12
    assert [r["length"] for r in result["by_length"]] == [16, 32] and 0 <= result["ci95"][0] <= result["accuracy"]
    code, out, _ = run(capsys, "eval", tiny_run, "--task", "listops", "--limit", "7")
    result = json.loads(out)
    assert code == 0 and result["n"] == 7 and result["chance"] == pytest.approx(0.1)


def test_eval_task_passkey_keeps_the_long_context_eval(capsys, tiny_run):
    code, out, _ = run(capsys, "eval", tiny_run, "--task", "passkey", "--lengths", "48", "--examples", "1",
                       "--method", "vanilla")
    rows = json.loads(out)["rows"]
    assert code == 0 and [(r["length"], r["depth"]) for r in rows] == [(48, 0.1), (48, 0.5), (48, 0.9)]


def test_task_command_errors_are_one_line(capsys, tmp_path, tiny_run):
    code, _, err = run(capsys, "task", "make", "nosuch", "-o", tmp_path / "x")
    assert code == 2 and err.count("\n") == 1 and "known tasks: listops" in err and not (tmp_path / "x").exists()
    code, _, err = run(capsys, "task", "make", "mqar", "--set", "queries=99", "-o", tmp_path / "x")
    assert code == 2 and "queries=99 is more than pairs=8" in err and not (tmp_path / "x").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    code, _, err = run(capsys, "task", "make", "induction", "-o", tmp_path / "full")
    assert code == 2 and "not empty" in err and sorted(p.name for p in (tmp_path / "full").iterdir()) == ["keep.txt"]
    tasks.make("induction", SMALL, tmp_path / "bad")
    lines = (tmp_path / "bad" / "test.jsonl").read_text().splitlines()
    lines[2] = '{"input": "a b", "target": 3}'
    (tmp_path / "bad" / "test.jsonl").write_text("\n".join(lines) + "\n")
    code, _, err = run(capsys, "eval", tiny_run, "--task", tmp_path / "bad")
    assert code == 2 and f"{tmp_path / 'bad' / 'test.jsonl'}:3:" in err and err.count("\n") == 1
    code, _, err = run(capsys, "eval", tiny_run, "--task", tmp_path / "nowhere")
    assert code == 2 and "neither a task directory" in err
