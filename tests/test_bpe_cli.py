"""`lmlab tokenizer train` and `lmlab tokenizer stats` end to end."""
import json
import random

from lmlab.cli import main
from lmlab import tokenizers


def corpus(tmp_path):
    rng = random.Random(1)
    words = "the old man and sea of light in a dark room: it was 2024 when".split()
    text = "".join(" ".join(rng.choices(words, k=10)) + ".\n" for _ in range(400))
    path = tmp_path / "c.txt"
    path.write_text(text, encoding="utf-8")
    return path, text


def test_train_then_stats(tmp_path, capsys):
    path, text = corpus(tmp_path)
    out = tmp_path / "tok"
    assert main(["tokenizer", "train", "--kind", "superbpe", "--vocab", "400", "--transition", "300",
                 str(path), "-o", str(out), "-q"]) == 0
    tok = tokenizers.load(out)
    assert tok.kind == "superbpe" and tok.vocab_size == 400 and tok.transition == 300
    capsys.readouterr()
    assert main(["tokenizer", "stats", str(out), str(path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)["files"][str(path)]
    assert stats["tokens"] == len(tok.encode(text))
    assert stats["bytes_per_token"] == len(text.encode()) / stats["tokens"]
    assert 0 < stats["superword_token_frac"] < 1 and 0 < stats["vocab_used_frac"] <= 1


def test_other_kinds_and_errors(tmp_path, capsys):
    path, _ = corpus(tmp_path)
    assert main(["tokenizer", "train", "--kind", "byte", str(path), "-o", str(tmp_path / "b"), "-q"]) == 0
    assert tokenizers.load(tmp_path / "b").kind == "byte"
    assert main(["tokenizer", "train", "--kind", "bpe", "--vocab", "100", str(path), "-o", str(tmp_path / "x")]) == 2
    assert "smaller than the byte alphabet" in capsys.readouterr().err
    assert main(["tokenizer", "train", "--kind", "superbpe", "--vocab", "300", "--transition", "400",
                 str(path), "-o", str(tmp_path / "x")]) == 2
    assert "larger than vocab_size" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["tokenizer", "train", "--kind", "bpe", str(empty), "-o", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_model_config_names_a_trained_tokenizer_directory(tmp_path, capsys):
    from lmlab.checkpoint import load_model

    path, text = corpus(tmp_path)
    tok_dir, run = tmp_path / "tok", tmp_path / "run"
    assert main(["tokenizer", "train", "--kind", "superbpe", "--vocab", "400", str(path),
                 "-o", str(tok_dir), "-q"]) == 0
    assert main(["train", "-c", "tiny", "--set", f"tokenizer.path={tok_dir}", "--set", f"data.corpus={path}",
                 "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "model.context=32",
                 "--set", "train.max_steps=2", "--set", "train.eval_every=2", "--set", "train.ckpt_every=2",
                 "-o", str(run)]) == 0
    model, tok, cfg = load_model(run)
    assert tok.kind == "superbpe" and model.cfg.vocab_size == tok.vocab_size == 400
    assert tok.encode(text) == tokenizers.load(tok_dir).encode(text)
