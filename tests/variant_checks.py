"""Checks every architecture variant must pass (issue 6), shared by the norm/FFN/MoE test files.

Each takes ModelConfig overrides; a model is small (2 layers, d=32) so a check takes well under a second.
"""
from __future__ import annotations

import contextlib

import torch

from lmlab import config
from lmlab.config import ModelConfig
from lmlab.infer.generate import generate
from lmlab.model import Transformer
from lmlab.model.training_hooks import set_progress
from lmlab.checkpoint import load_model
from lmlab.train.loop import train

VOCAB = 37


@contextlib.contextmanager
def one_thread():
    """Tiny models gain nothing from threads, and on a busy shared CPU they lose a lot to them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def make_model(seed: int = 0, **kw) -> Transformer:
    torch.manual_seed(seed)
    base = dict(n_layers=2, d_model=32, n_heads=4, context=48, vocab_size=VOCAB)
    base.update(kw)
    return Transformer(ModelConfig(**base))


@torch.no_grad()
def check_causal(model, atol: float = 1e-6) -> None:
    model.eval()
    ids = torch.randint(0, VOCAB, (2, 40))
    base = model(ids)[0]
    for t in (0, 17, 39):
        changed = ids.clone()
        changed[:, t] = (changed[:, t] + 1) % VOCAB
        out = model(changed)[0]
        torch.testing.assert_close(out[:, :t], base[:, :t], atol=atol, rtol=0)
        assert (out[:, t] - base[:, t]).abs().max() > 1e-4


@torch.no_grad()
def check_cached_greedy(model, n_new: int = 25) -> None:
    with one_thread():
        _check_cached_greedy(model, n_new)


def _check_cached_greedy(model, n_new: int) -> None:
    model.eval()
    prompt = torch.randint(0, VOCAB, (2, 9))
    seq = prompt
    for _ in range(n_new):
        seq = torch.cat([seq, model(seq)[0][:, -1].argmax(-1, keepdim=True)], 1)
    cache = model.new_cache(48)
    logits = model(prompt, cache=cache)[0][:, -1]
    cached, steps = prompt, [logits]
    for _ in range(n_new):
        nxt = logits.argmax(-1, keepdim=True)
        cached = torch.cat([cached, nxt], 1)
        logits = model(nxt, cache=cache)[0][:, -1]
        steps.append(logits)
    assert torch.equal(cached, seq)
    torch.testing.assert_close(torch.stack(steps, 1), model(seq)[0][:, 8:], atol=1e-5, rtol=1e-4)


def aux_total(model):
    total = 0.0
    for m in model.modules():
        aux = getattr(m, "aux_loss", None)
        if isinstance(aux, torch.Tensor):
            total = total + aux
            m.aux_loss = None
    return total


def check_gradients(model, progress: float = 0.1) -> None:
    model.train()
    set_progress(model, progress)
    ids = torch.randint(0, VOCAB, (4, 40))
    _, loss = model(ids[:, :-1], ids[:, 1:])
    (loss + aux_total(model)).backward()
    dead = [n for n, p in model.named_parameters()
            if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not dead, dead


def check_overfits(model, steps: int = 120) -> None:
    with one_thread():
        _check_overfits(model, steps)


def _check_overfits(model, steps: int) -> None:
    model.train()
    ids = torch.randint(0, VOCAB, (2, 33))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(steps):
        _, loss = model(ids[:, :-1], ids[:, 1:])
        first = first if first is not None else loss.item()
        opt.zero_grad()
        (loss + aux_total(model)).backward()
        opt.step()
    assert first > 3.0 and loss.item() < 0.1, (first, loss.item())


TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 40


def run_config(tmp_path, overrides, steps: int):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    return config.load("tiny", [f"data.corpus={corpus}", f"data.cache_dir={tmp_path / 'cache'}", "model.n_layers=2",
                                "model.d_model=32", "model.context=32", f"train.max_steps={steps}",
                                "train.ckpt_every=2", "train.eval_every=2", "train.eval_batches=1",
                                "train.batch_size=4", *overrides])


def check_train_resume_load_generate(tmp_path, overrides) -> None:
    with one_thread():
        _check_train_resume_load_generate(tmp_path, overrides)


def _check_train_resume_load_generate(tmp_path, overrides) -> None:
    quiet = dict(progress=False, echo=lambda *a: None)
    cfg = run_config(tmp_path, overrides, 4)
    run = tmp_path / "run"
    assert train(cfg, run, **quiet)["step"] == 4
    cfg.train.max_steps = 6
    assert train(cfg, run, resume=True, **quiet)["step"] == 6
    model, tokenizer, loaded_cfg = load_model(run)
    for key in ("norm", "ffn", "self_guided", "moe_capacity"):
        assert getattr(loaded_cfg.model, key) == getattr(cfg.model, key)
    ids = torch.tensor([tokenizer.encode("To be, or not")])
    fresh = Transformer(loaded_cfg.model).eval()
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh(ids)[0], model(ids)[0], atol=0, rtol=0)
    text = generate(model, tokenizer, "To be", max_new_tokens=30, temperature=0)
    assert len(text) > 0 and text == generate(model, tokenizer, "To be", max_new_tokens=30, temperature=0)
