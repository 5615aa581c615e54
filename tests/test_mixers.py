"""The M (selective SSM) and L (Legendre memory) mixers on their own: parallel == recurrent."""
import math

import pytest
import torch

from lmlab.config import ModelConfig
from lmlab.model.block import MIXERS
from lmlab.model.mixers.lmu import LMUMixer, causal_fft_conv, discretise_zoh, impulse_response, legendre_system
from lmlab.model.mixers.ssm import SelectiveSSM, ssd_recurrent, ssd_scan


@pytest.mark.parametrize("T,chunk", [(13, 4), (16, 16), (5, 64), (1, 8)])
def test_chunked_scan_equals_recurrence(T, chunk):
    torch.manual_seed(T)
    b, h, p, n = 2, 3, 4, 5
    x, dt = torch.randn(b, T, h, p), torch.rand(b, T, h)
    A = -torch.rand(h) * 3
    B, C = torch.randn(b, T, n), torch.randn(b, T, n)
    s0 = torch.randn(b, h, p, n)
    for state in (None, s0):
        y1, S1 = ssd_scan(x, dt, A, B, C, state, chunk=chunk)
        y2, S2 = ssd_recurrent(x, dt, A, B, C, state)
        torch.testing.assert_close(y1, y2, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(S1, S2, atol=1e-5, rtol=1e-5)


def test_scan_state_splits_at_any_point():
    torch.manual_seed(0)
    b, T, h, p, n = 1, 20, 2, 3, 4
    x, dt, A = torch.randn(b, T, h, p), torch.rand(b, T, h), -torch.rand(h)
    B, C = torch.randn(b, T, n), torch.randn(b, T, n)
    y, S = ssd_scan(x, dt, A, B, C, chunk=8)
    ya, Sa = ssd_scan(x[:, :7], dt[:, :7], A, B[:, :7], C[:, :7], chunk=8)
    yb, Sb = ssd_scan(x[:, 7:], dt[:, 7:], A, B[:, 7:], C[:, 7:], Sa, chunk=8)
    torch.testing.assert_close(torch.cat([ya, yb], 1), y, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(Sb, S, atol=1e-5, rtol=1e-5)


def test_lmu_fft_memory_equals_recurrence():
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, context=32, lmu_order=8, vocab_size=10)
    mixer = LMUMixer(cfg)
    u, m0 = torch.randn(2, 23, mixer.c), torch.randn(2, mixer.c, mixer.q)
    for state in (None, m0):
        m, last = mixer.memory(u, state)
        s = torch.zeros(2, mixer.c, mixer.q) if state is None else state
        steps = []
        for t in range(u.shape[1]):
            s = mixer.step(u[:, t], s)
            steps.append(s)
        torch.testing.assert_close(m, torch.stack(steps, 1), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(last, s, atol=1e-5, rtol=1e-4)


def test_legendre_memory_holds_a_delayed_copy():
    # The Legendre delay system of window theta keeps u(t - theta) ~ sum_i m_i (shifted Legendre
    # polynomials all equal 1 at the window's end) and u(t) ~ sum_i (-1)^i m_i at its start.
    theta, q, T = 40.0, 12, 200
    Abar, Bbar = discretise_zoh(*legendre_system(q, theta))
    H, _ = impulse_response(Abar, Bbar, T)
    t = torch.arange(T, dtype=torch.float64)
    u = torch.sin(2 * math.pi * t / 80)
    m = causal_fft_conv(u[None, :, None], H)[0, :, 0].double()      # [T, q]
    signs = (-1.0) ** torch.arange(q, dtype=torch.float64)
    late = slice(100, T)
    assert (m[late].sum(-1) - u[60:T - 40]).abs().max() < 0.05
    assert (m[late] @ signs - u[late]).abs().max() < 0.05
    assert (m[late].sum(-1) - u[late]).abs().max() > 0.5              # and the two differ


@pytest.mark.parametrize("make", [lambda c: SelectiveSSM(c, chunk=4), LMUMixer])
def test_mixer_cache_chunk_then_tokens_equals_full(make):
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, context=32, ssm_head_dim=16, ssm_state=8, lmu_order=8, vocab_size=10)
    mixer = make(cfg).eval()
    x = torch.randn(2, 17, 32)
    full = mixer(x)
    cache = {"max_len": 32}
    parts = [mixer(x[:, :6], cache=cache, start_pos=0)]
    parts += [mixer(x[:, t:t + 1], cache=cache, start_pos=t) for t in range(6, 11)]
    parts += [mixer(x[:, 11:], cache=cache, start_pos=11)]          # a chunk after single tokens
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-4)
    # start_pos 0 starts over, whatever the cache holds
    torch.testing.assert_close(mixer(x[:, :6], cache=cache, start_pos=0), full[:, :6], atol=1e-6, rtol=0)


def test_letters_are_registered():
    assert MIXERS["M"][0] == "ssm" and MIXERS["L"][0] == "lmu"
