"""Heads as factored matrices: hand computations on 2-layer models, GQA sharing, RoPE offsets,
invariance under a rotation of the residual stream, the rank-1 (Talking Heads) decomposition."""
import copy

import pytest
import torch

from lmlab.analysis import run_with_cache
from lmlab.analysis.factored import FactoredMatrix, pairwise_product_norms
from lmlab.analysis.heads import Heads

from test_analysis_hooks import make, prompt

DH = 8


def gains(model, seed=5):
    """Non-trivial norm gains and biases, so that folding them matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.5 * torch.randn(p.shape, generator=g))
            elif "norm" in name and name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model


def test_factored_matrix_matches_the_dense_product():
    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(5, 16, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, 12, generator=g, dtype=torch.float64)
    fm, dense = FactoredMatrix(A, B), A @ B
    assert fm.shape == (5, 16, 12) and torch.allclose(fm.AB, dense)
    U, S, Vh = fm.svd()
    assert U.shape == (5, 16, 4) and Vh.shape == (5, 4, 12)
    assert torch.allclose(U @ torch.diag_embed(S) @ Vh, dense)
    assert torch.allclose(S, torch.linalg.svdvals(dense)[:, :4]) and torch.allclose(fm.singular_values(), S)
    assert torch.allclose(fm.norm(), torch.linalg.matrix_norm(dense))
    assert torch.allclose(fm.T.AB, dense.mT)
    C = torch.randn(12, 7, generator=g, dtype=torch.float64)
    assert torch.allclose((fm @ C).AB, dense @ C) and torch.allclose((C.T @ fm.T).AB, C.T @ dense.mT)
    other = FactoredMatrix(torch.randn(5, 12, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, 9, generator=g, dtype=torch.float64))
    assert torch.allclose((fm @ other).AB, dense @ other.AB) and (fm @ other).inner == 3
    right = FactoredMatrix(torch.randn(3, 12, 2, generator=g, dtype=torch.float64), torch.randn(3, 2, 6, generator=g, dtype=torch.float64))
    by_hand = torch.stack([torch.stack([torch.linalg.matrix_norm(dense[i] @ right.AB[j]) for j in range(3)]) for i in range(5)])
    assert torch.allclose(pairwise_product_norms(fm, right, chunk=2), by_hand)


def by_hand(model, layer, head):
    """W_Q, W_K, W_V [d, dh], W_O [dh, d] of one head, folded as heads.py documents, by indexing."""
    attn = model.blocks[layer].sublayers["attn"]
    mixer, d = attn.mixer, model.cfg.d_model
    group = head // (mixer.n_heads // mixer.n_kv_heads)
    g = torch.diag(attn.norm.weight.detach())
    rows = lambda w, h: w.weight.detach()[h * DH:(h + 1) * DH].T
    W_O = mixer.o_proj.weight.detach()[:, head * DH:(head + 1) * DH].T
    if model.cfg.norm == "layernorm":  # centring on both sides
        P = torch.eye(d) - torch.ones(d, d) / d
        W_O, g = W_O @ P, P @ g
    return g @ rows(mixer.q_proj, head), g @ rows(mixer.k_proj, group), g @ rows(mixer.v_proj, group), W_O


@pytest.mark.parametrize("kw", [dict(positions="learned", norm="layernorm", bias=True), dict(norm="rmsnorm", n_kv_heads=2)])
def test_circuits_and_composition_scores_equal_the_hand_computation(kw):
    model = gains(make(**kw))
    heads = Heads(model)
    assert heads.labels == [f"L{i}H{h}" for i in range(2) for h in range(4)]
    ov, qk = heads.OV.AB, heads.QK().AB
    for layer in range(2):
        for head in range(4):
            Wq, Wk, Wv, Wo = by_hand(model, layer, head)
            n = 4 * layer + head
            torch.testing.assert_close(ov[n], Wv @ Wo, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(qk[n], Wq @ Wk.T, atol=1e-6, rtol=1e-5)
    spectra = heads.spectra()
    torch.testing.assert_close(spectra["OV"], torch.linalg.svdvals(ov)[:, :DH], atol=1e-5, rtol=1e-4)
    dense_reader = {"Q": qk, "K": qk.mT, "V": ov}
    for mode in "QKV":
        scores = heads.composition(mode)
        for a in range(4):
            for b in range(8):
                if b < 4:  # same layer: no composition
                    assert scores[a, b] == 0
                    continue
                want = torch.linalg.matrix_norm(ov[a] @ dense_reader[mode][b]) / (
                    torch.linalg.matrix_norm(ov[a]) * torch.linalg.matrix_norm(dense_reader[mode][b]))
                torch.testing.assert_close(scores[a, b], want, atol=1e-6, rtol=1e-4)
        assert (scores[4:] == 0).all()
        assert heads.grid(scores).shape == (2, 4, 2, 4)


def test_grouped_query_heads_share_keys_and_values():
    model = gains(make(n_heads=4, n_kv_heads=2))
    layer = Heads(model).layers[0]
    assert torch.equal(layer.W_K[0], layer.W_K[1]) and torch.equal(layer.W_V[2], layer.W_V[3])
    assert not torch.equal(layer.W_K[1], layer.W_K[2]) and not torch.equal(layer.W_Q[0], layer.W_Q[1])


@pytest.mark.parametrize("kw", [dict(norm="rmsnorm"), dict(positions="learned", norm="layernorm", bias=False),
                                dict(norm="crmsnorm")])
def test_qk_is_the_score_bilinear_form_with_rope_offsets(kw):
    """scores[i, j] * sqrt(dh) = xhat_i QK(i - j) xhat_j^T, xhat the normalised stream without gain."""
    model = gains(make(**kw))
    ids = prompt(model, length=9)
    _, cache = run_with_cache(model, ids, ["blocks.1.resid_pre", "blocks.1.attn.norm.scale", "blocks.1.attn.scores"])
    x = cache["blocks.1.resid_pre"][0]
    if model.cfg.norm == "layernorm":
        x = x - x.mean(-1, keepdim=True)
    xhat = x / cache["blocks.1.attn.norm.scale"][0]
    scores = cache["blocks.1.attn.scores"][0] * DH ** 0.5
    heads = Heads(model)
    rope = model.cfg.positions == "rope"
    for i, j in [(3, 3), (5, 2), (8, 0)]:
        qk = heads.QK(offset=i - j if rope else None).AB[4:]
        torch.testing.assert_close(xhat[i] @ qk @ xhat[j], scores[:, i, j], atol=1e-4, rtol=1e-4)
    if rope:  # without the offset the position-free part differs
        assert not torch.allclose(xhat[8] @ heads.QK().AB[4:] @ xhat[0], scores[:, 8, 0], atol=1e-3)


def rotate(model, R):
    """The same function with the residual stream rotated by R (every writer and reader)."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.embed.weight.copy_(model.embed.weight @ R)
        for block in model.blocks:
            attn, ffn = block.sublayers["attn"].mixer, block.sublayers["ffn"].mixer
            for lin in (attn.q_proj, attn.k_proj, attn.v_proj, ffn.up):
                lin.weight.copy_(lin.weight @ R)
            for lin in (attn.o_proj, ffn.down):
                lin.weight.copy_(R.T @ lin.weight)
    return model


def test_composition_scores_are_invariant_to_a_rotation_of_the_residual_stream():
    model = make(norm="rmsnorm", norm_affine=False)
    R = torch.linalg.qr(torch.randn(32, 32, generator=torch.Generator().manual_seed(3))).Q
    turned = rotate(model, R)
    ids = prompt(model)
    with torch.no_grad():
        torch.testing.assert_close(turned(ids)[0], model(ids)[0], atol=1e-5, rtol=1e-5)  # same model
    before, after = Heads(model), Heads(turned)
    assert not torch.allclose(before.OV.AB, after.OV.AB, atol=1e-3)
    for mode in "QKV":
        torch.testing.assert_close(after.composition(mode), before.composition(mode), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(after.spectra()["QK"], before.spectra()["QK"], atol=1e-5, rtol=1e-4)


def test_per_component_scores_decompose_the_composition_score():
    """||OV_A M||^2 = sum_i S_i^2 ||Vh_i M||^2, since the U_i are orthonormal."""
    model = gains(make(norm="layernorm", n_kv_heads=2))
    heads = Heads(model)
    for mode in "QKV":
        per, S = heads.composition_by_component(mode)
        whole = heads.composition(mode)
        assert per.shape == (8, DH, 8) and S.shape == (8, DH)
        ov_norm = heads.OV.norm()
        rebuilt = ((S[:, :, None] * per) ** 2).sum(1).sqrt() / ov_norm[:, None]
        torch.testing.assert_close(rebuilt, whole, atol=1e-5, rtol=1e-4)
        _, _, Vh = heads.OV.svd()
        reader = heads.reader(mode).AB
        torch.testing.assert_close(per[1, 0, 6], torch.linalg.vector_norm(Vh[1, 0] @ reader[6]) / torch.linalg.matrix_norm(reader[6]),
                                   atol=1e-6, rtol=1e-4)
