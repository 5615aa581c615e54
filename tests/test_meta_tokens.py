"""Meta-tokens: injection keeps text and targets aligned; meta-attention stays among meta-tokens."""
import pytest
import torch

from lmlab.config import ModelConfig
from lmlab.model import Transformer

V = 30


def make_model(meta_tokens=3, rate=0.1, n_layers=2, **kw):
    torch.manual_seed(0)
    cfg = ModelConfig(n_layers=n_layers, d_model=32, n_heads=4, context=64, vocab_size=V,
                      meta_tokens=meta_tokens, meta_rate=rate, **kw)
    return Transformer(cfg)


def test_injection_inserts_metas_and_keeps_text_targets_aligned():
    model = make_model(rate=0.25)
    idx = torch.randint(0, V, (3, 40))
    targets = idx + 100  # distinct from ids so a mix-up shows
    new_idx, new_t = model.meta.inject(idx, targets)
    assert new_idx.shape == idx.shape
    is_meta = new_idx >= V
    assert (is_meta.sum(1) == 10).all() and (new_idx < V + 3).all()
    assert (new_t[is_meta] == -1).all()
    for b in range(3):
        text = new_idx[b][~is_meta[b]]
        assert torch.equal(text, idx[b, :30])                      # order kept, overflow dropped
        assert torch.equal(new_t[b][~is_meta[b]], targets[b, :30])  # each token keeps its own target
    assert not torch.equal(is_meta[0], is_meta[1])                  # positions are drawn per row


def test_eval_on_plain_text_equals_the_same_model_without_meta_tokens():
    meta = make_model().eval()
    plain = make_model(meta_tokens=0).eval()
    plain.load_state_dict({k: v for k, v in meta.state_dict().items() if not k.startswith("meta.")})
    ids = torch.randint(0, V, (2, 50))
    with torch.no_grad():
        assert torch.equal(meta(ids)[0], plain(ids)[0])
        # training mode without targets (no loss) injects nothing either
        assert torch.equal(meta.train()(ids)[0], plain.train()(ids)[0])


@torch.no_grad()
def test_meta_attention_reads_only_meta_positions():
    model = make_model().eval()
    ids = torch.randint(0, V, (1, 30))
    ids[0, [4, 12, 20]] = torch.tensor([V, V + 2, V + 1])
    x = torch.randn(1, 30, 32)
    is_meta = ids >= V
    attn = model.meta.attn[0]
    out = attn(x, is_meta, model.rope(30))
    assert torch.equal(out[~is_meta], x[~is_meta])                  # text positions untouched
    assert not torch.equal(out[is_meta], x[is_meta])
    y = x.clone()
    y[0, [7, 25]] += torch.randn(2, 32)  # text positions: meta-attention output unchanged
    assert torch.equal(attn(y, is_meta, model.rope(30))[is_meta], out[is_meta])
    z = x.clone()
    z[0, 12] += torch.randn(32)  # the second meta-token: the first is unaffected, the third changes
    outz = attn(z, is_meta, model.rope(30))
    assert torch.equal(outz[0, 4], out[0, 4]) and not torch.equal(outz[0, 20], out[0, 20])


@torch.no_grad()
def test_explicit_meta_ids_are_causal_and_cache_exact():
    model = make_model().eval()
    ids = torch.randint(0, V, (2, 40))
    ids[0, [3, 15, 16]] = V
    ids[1, [9]] = V + 2  # rows with different meta counts
    base = model(ids)[0]
    for t in (3, 10, 30):
        changed = ids.clone()
        changed[:, t] = torch.where(changed[:, t] >= V, V + 1, (changed[:, t] + 1) % V)
        out = model(changed)[0]
        torch.testing.assert_close(out[:, :t], base[:, :t], atol=0, rtol=0)
        assert (out[:, t] - base[:, t]).abs().max() > 1e-4
    cache = model.new_cache(64)
    parts = [model(ids[:, :12], cache=cache)[0]] + [model(ids[:, t:t + 1], cache=cache)[0] for t in range(12, 40)]
    torch.testing.assert_close(torch.cat(parts, 1), base, atol=1e-5, rtol=1e-4)


def test_ids_beyond_meta_range_are_refused():
    model = make_model().eval()
    with pytest.raises(ValueError, match="meta-tokens"):
        model(torch.tensor([[1, V + 3]]))


def test_training_uses_and_trains_meta_tokens():
    model = make_model(rate=0.2).train()
    ids = torch.randint(0, V, (4, 33))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = model.meta.weight.detach().clone()
    first = None
    for _ in range(150):
        _, loss = model(ids[:, :-1], ids[:, 1:])
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        assert model.meta.weight.grad.abs().sum() > 0
        opt.step()
    assert not torch.equal(before, model.meta.weight)
    assert first > 3.0 and loss.item() < 0.3


def test_meta_tokens_work_with_the_narrow_crmsnorm_stream():
    import torch

    from lmlab.config import ModelConfig
    from lmlab.model import Transformer

    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=50, n_layers=2, d_model=32, n_heads=4, context=32,
                                    norm="crmsnorm", meta_tokens=2))
    x = torch.randint(0, 50, (2, 20))
    model.train()
    _, loss = model(x, x)
    loss.backward()
    assert torch.isfinite(loss)
    model.eval()
    y = x.clone()
    y[:, 10] = (y[:, 10] + 1) % 50
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(y)
    assert torch.equal(a[:, :10], b[:, :10]) and not torch.equal(a[:, 10:], b[:, 10:])
