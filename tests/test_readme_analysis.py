"""README.md's analysis example, run as it stands on a trained run, so that it cannot rot: the
block after the `<!-- analysis-example -->` marker, with only the run path swapped."""
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def example_code() -> str:
    m = re.search(r"<!-- analysis-example -->\n```python\n(.*?)```", README.read_text(), re.S)
    assert m, "README.md lost its analysis example"
    return m.group(1)


def test_readme_analysis_example_runs_and_its_lens_ends_at_the_models_own_output(tiny_run, capsys):
    code = example_code()
    assert code.count('"runs/demo"') == 1
    scope: dict = {}
    exec(compile(code.replace('"runs/demo"', repr(str(tiny_run))), "README.md", "exec"), scope)
    lines = capsys.readouterr().out.splitlines()
    model, tok = scope["model"], scope["tok"]
    kl = scope["kl"]
    assert kl > 0 and f"KL {kl:.3g} nats" in lines[0]     # the two prompts differ, so the patch moves it
    assert len(lines) == 1 + len(model.blocks)
    own = int(scope["logits"][0, -1].argmax())            # the last block's lens is the output itself
    assert lines[-1] == f"after block {len(model.blocks) - 1}: next character {tok.decode([own])!r}"
    with torch.no_grad():
        plain, _ = model(torch.tensor([scope["clean"]]))
    assert torch.equal(scope["base"], plain[0, -1].log_softmax(-1))   # an empty hook set changes nothing
