"""`lmlab analyze`: every analysis writes JSON and PNGs; bad input is one line on stderr, exit 2,
nothing written; texts longer than the context are windowed, prompts longer are refused."""
import json

import pytest
import torch

from lmlab import checkpoint, config
from lmlab.cli import main
from lmlab.model import Transformer
from lmlab.tokenizers.byte import ByteTokenizer

TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer. " * 3


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A random-weight byte-level run with an attention + SSM hybrid pattern (context 64)."""
    out = tmp_path_factory.mktemp("run")
    cfg = config.load("tiny", ["model.pattern=AF MF", "tokenizer.kind=byte", "model.n_layers=2"])
    tok = ByteTokenizer()
    cfg.model.vocab_size = tok.vocab_size
    torch.manual_seed(0)
    checkpoint.save(out, 0, Transformer(cfg.model), None, tok, cfg, {})
    return out


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "text.txt"
    path.write_text(TEXT)
    return path


def listing(path):
    return sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*"))


@pytest.mark.parametrize("what,files", [
    ("heads", ["heads.json", "composition_Q.png", "composition_K.png", "composition_V.png", "spectra_OV.png", "spectra_QK.png"]),
    ("lens", ["lens.json", "lens.png"]),
    ("trajectory", ["trajectory.json", "trajectory.png"]),
    ("sinks", ["sinks.json", "sinks.png"]),
    ("patterns", ["patterns.json", "blocks_0_attn_pattern.png"]),
])
def test_each_analysis_writes_json_and_pngs(run, text_file, tmp_path, capsys, what, files):
    before = listing(run)
    args = ["analyze", str(run), "--what", what, "-o", str(tmp_path / "out"), "--prompt", "To be, or not to be"]
    if what in ("lens", "sinks"):
        args += ["--text", str(text_file)]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["what"] == what
    for f in files:
        assert (tmp_path / "out" / f).stat().st_size > 0, f
    json.loads((tmp_path / "out" / files[0]).read_text())
    assert listing(run) == before  # the run directory is untouched
    if what == "lens":  # 265 tokens in windows of 64: every target counted once
        assert json.loads((tmp_path / "out" / "lens.json").read_text())["tokens"] == len(TEXT.encode()) - 1


def test_cache_writes_the_named_activations(run, tmp_path, capsys):
    from safetensors.torch import load_file

    assert main(["analyze", str(run), "--what", "cache", "--names", "blocks.0.attn.pattern", "--names", "blocks.1.ssm.*",
                 "--prompt", "To be", "-o", str(tmp_path / "c")]) == 0
    tensors = load_file(tmp_path / "c" / "cache.safetensors")
    assert tensors["blocks.0.attn.pattern"].shape == (1, 4, 5, 5)
    assert {"blocks.1.ssm.state", "blocks.1.ssm.x", "blocks.1.ssm.in"} <= set(tensors)


def bad(capsys, tmp_path, *args):
    assert main(["analyze", *args, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    return err


def test_bad_input_is_one_line_and_writes_nothing(run, tmp_path, capsys):
    err = bad(capsys, tmp_path, str(run), "--what", "cache", "--names", "blocks.0.attn.patern", "--prompt", "hi")
    assert "valid names, closest first" in err and err.split(": ")[2].startswith("blocks.{i}.attn.pattern, ")
    err = bad(capsys, tmp_path, str(run), "--what", "patterns", "--layer", "1", "--prompt", "hi")
    assert err == ("error: blocks.1.attn.pattern: block 1 has the pattern 'MF' (M = ssm, F = ffn), "
                   "no attn sublayer; blocks with attn: 0\n")
    err = bad(capsys, tmp_path, str(run), "--what", "trajectory", "--prompt", "x" * 65)
    assert "65 tokens, longer than the model's context (64)" in err
    bad(capsys, tmp_path, str(run), "--what", "lens")
    bad(capsys, tmp_path, str(run), "--what", "cache", "--prompt", "hi")
    bad(capsys, tmp_path, str(run), "--what", "lens", "--text", str(tmp_path / "missing.txt"))


def test_a_model_without_attention_is_refused_for_head_analyses(tmp_path, capsys):
    cfg = config.load("tiny", ["model.pattern=MF", "tokenizer.kind=byte"])
    tok = ByteTokenizer()
    cfg.model.vocab_size = tok.vocab_size
    checkpoint.save(tmp_path / "ssm", 0, Transformer(cfg.model), None, tok, cfg, {})
    err = bad(capsys, tmp_path, str(tmp_path / "ssm"), "--what", "heads")
    assert err == "error: --what heads needs attention, and the model's pattern 'MF' has no 'A'\n"


def test_progress_bar_counts_forward_passes_and_removes_its_hook_even_after_an_error(run, monkeypatch):
    import io

    from lmlab.analysis.progress import forward_bar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stderr", Terminal())  # tqdm draws only on a terminal

    model = Transformer(config.load("tiny", ["model.n_layers=2", "model.vocab_size=16"]).model)
    ids = torch.zeros(1, 4, dtype=torch.long)
    with forward_bar(model, "t", show=True) as bar:
        model(ids)
        model(ids)
    assert bar.n == 2 and not model._forward_hooks and "t: " in __import__("sys").stderr.getvalue()
    with pytest.raises(RuntimeError), forward_bar(model, "t", show=False):
        raise RuntimeError("inside")
    assert not model._forward_hooks


def test_quiet_and_default_write_the_same_json_on_stdout(run, tmp_path, capsys):
    outs = []
    for extra in ([], ["--quiet"]):
        assert main(["analyze", str(run), "--what", "trajectory", "--prompt", "To be", "-o",
                     str(tmp_path / f"o{len(outs)}"), *extra]) == 0
        outs.append(capsys.readouterr().out.replace(str(tmp_path / f"o{len(outs)}"), "OUT"))
    assert outs[0] == outs[1] and json.loads(outs[0])["what"] == "trajectory"
