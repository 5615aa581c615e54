"""generate.compile: the torch.compile'd decoder gives the eager decoder's logits, through the KV cache."""
import pytest
import torch

from lmlab.errors import LmlabError
from lmlab.train.device import compiled_for_decoding


def test_compiled_decoder_matches_eager_through_the_cache(tiny_run, capsys):
    from lmlab.cli import main
    from lmlab.train.checkpoint import load_model

    model, tok, _ = load_model(tiny_run)
    compiled = compiled_for_decoding(model, torch.device("cpu"))
    x = torch.tensor([tok.encode("ROMEO: Is it a custom that you should")])

    def logits(m):
        cache = m.new_cache()
        parts = [m(x[:, :7], cache=cache)[0]] + [m(x[:, t:t + 1], cache=cache)[0] for t in range(7, x.shape[1])]
        return torch.cat(parts, 1)

    with torch.no_grad():
        want, got = logits(model), logits(compiled)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)  # fp32: only the order of float sums differs
    assert main(["generate", str(tiny_run), "--prompt", "ROMEO:", "--max-new-tokens", "6", "--compile",
                 "--dtype", "int8"]) == 0
    assert capsys.readouterr().out.startswith("ROMEO:")


def test_compile_without_a_cxx_compiler_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(LmlabError, match="C\\+\\+ compiler"):
        compiled_for_decoding(torch.nn.Linear(2, 2), torch.device("cpu"))
