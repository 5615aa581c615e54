"""The CLI's promises: real output for good input; one line, exit 2, nothing lost for bad input."""
import json
import subprocess
import sys

import pytest

from lmlab.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def test_unknown_config_key(capsys, tmp_path):
    code, _, err = run(capsys, "train", "-c", "tiny", "-o", tmp_path / "r", "--set", "train.max_step=5")
    assert_one_line_error(code, err, "train.max_step", "max_steps", "batch_size")
    assert not (tmp_path / "r").exists()


def test_missing_empty_and_invalid_utf8_corpora(capsys, tmp_path):
    code, _, err = run(capsys, "train", "-c", "tiny", "-o", tmp_path / "r", "--set", f"data.corpus={tmp_path}/nope.txt")
    assert_one_line_error(code, err, "not found")
    (tmp_path / "empty.txt").write_text("")
    code, _, err = run(capsys, "train", "-c", "tiny", "-o", tmp_path / "r", "--set", f"data.corpus={tmp_path}/empty.txt")
    assert_one_line_error(code, err, "empty")
    (tmp_path / "bad.txt").write_bytes(b"hello \xff world" * 100)
    code, _, err = run(capsys, "train", "-c", "tiny", "-o", tmp_path / "r", "--set", f"data.corpus={tmp_path}/bad.txt")
    assert_one_line_error(code, err, "not valid UTF-8", "0xff", "offset 6")
    (tmp_path / "short.txt").write_text("too short")
    code, _, err = run(capsys, "train", "-c", "tiny", "-o", tmp_path / "r", "--set", f"data.corpus={tmp_path}/short.txt")
    assert_one_line_error(code, err, "too small")


def test_directory_and_jsonl_corpora_train(capsys, tmp_path, shared_data):
    rows = [json.dumps({"text": line}) for line in (shared_data / "multilingual" / "en.txt").read_text().splitlines() if line]
    (tmp_path / "c.jsonl").write_text("\n".join(rows))
    for corpus in (tmp_path / "c.jsonl", shared_data / "multilingual"):
        out = tmp_path / f"run-{corpus.name}"
        code, stdout, err = run(capsys, "train", "-c", "tiny", "-o", out, "--set", f"data.corpus={corpus}",
                                "--set", "train.max_steps=2", "--set", "train.eval_every=0")
        assert code == 0, err
        assert json.loads(stdout)["step"] == 2


def test_generate_eval_info_tokenize(capsys, tiny_run, tmp_path, monkeypatch):
    code, out, err = run(capsys, "generate", tiny_run, "--prompt", "ROMEO:", "--max-new-tokens", "30", "--temperature", "0")
    assert code == 0, err and out.startswith("ROMEO:")
    code2, out2, _ = run(capsys, "generate", tiny_run, "--prompt", "ROMEO:", "--max-new-tokens", "30", "--temperature", "0")
    assert out2 == out  # greedy is deterministic
    code, out, err = run(capsys, "eval", tiny_run, "--max-tokens", "500")
    result = json.loads(out)
    assert code == 0 and result["tokens"] == 500 and result["bpb"] > 0 and result["ppl"] > 1
    code, out, err = run(capsys, "info", tiny_run)
    info = json.loads(out)
    assert info["params"] > 0 and info["flops_per_token"]["train"] == 3 * info["flops_per_token"]["forward"]
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("To be 🦄".encode())))
    code, ids, _ = run(capsys, "tokenize", tiny_run)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(ids.encode())))
    code, text, _ = run(capsys, "tokenize", tiny_run, "--decode")
    assert text == "To be 🦄"


def test_bad_prompts(capsys, tiny_run, tmp_path):
    code, _, err = run(capsys, "generate", tiny_run, "--prompt", "")
    assert_one_line_error(code, err, "prompt is empty")
    code, _, err = run(capsys, "generate", tiny_run, "--prompt", "x" * 65)
    assert_one_line_error(code, err, "longer than the model's context of 64")
    (tmp_path / "p.txt").write_bytes(b"\xc3(")
    code, _, err = run(capsys, "generate", tiny_run, "--prompt-file", tmp_path / "p.txt")
    assert_one_line_error(code, err, "not valid UTF-8")


def test_bad_checkpoint_paths(capsys, tmp_path):
    code, _, err = run(capsys, "eval", tmp_path / "missing")
    assert_one_line_error(code, err, "does not exist")
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "generate", tmp_path / "empty", "--prompt", "a")
    assert_one_line_error(code, err, "neither a run directory nor a checkpoint")


def test_a_real_process_prints_no_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "lmlab.cli", "train", "-c", "tiny", "--set", "model.n_heads=5",
                           "-o", str(tmp_path / "r")], capture_output=True, text=True)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.strip().startswith("error: model.d_model (64) must be divisible")


def test_hf_corpus_without_datasets_is_a_clear_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if the optional extra were not installed
    code, _, err = run(capsys, "train", "-c", "tiny", "-o", tmp_path / "r", "--set", "data.corpus=hf:roneneldan/TinyStories")
    assert_one_line_error(code, err, "datasets")


def test_demo_trains_evaluates_and_samples_then_reuses_the_run(capsys, tmp_path):
    args = ("demo", "-c", "tiny", "-o", tmp_path / "demo", "--eval-tokens", "300", "--set", "generate.max_new_tokens=20",
            "--set", 'generate.prompts=["ROMEO:", "JULIET:"]')
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert '"bpb"' in out and "ROMEO:" in out and "JULIET:" in out and "== sample 2" in out
    code, out2, err = run(capsys, *args)  # second time: nothing to train, same evaluation
    assert code == 0 and out2.split("== sample")[0].split("== evaluation")[1] == out.split("== sample")[0].split("== evaluation")[1]
