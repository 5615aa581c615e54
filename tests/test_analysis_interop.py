"""Against TransformerLens (the `interp` extra) on a GPT-2-shaped model exported to HF: the same
activations at the mapped names and the same composition scores. Skipped without transformer_lens."""
import pytest
import torch

from lmlab import hf
from lmlab.analysis import hook_names, run_with_cache
from lmlab.analysis.heads import Heads
from lmlab.analysis.names import transformer_lens_name
from lmlab.config import ModelConfig
from lmlab.model import Transformer
from lmlab.tokenizers.byte import ByteTokenizer

transformer_lens = pytest.importorskip("transformer_lens")
transformers = pytest.importorskip("transformers")
try:
    from transformer_lens.model_bridge import TransformerBridge
except ImportError:  # TransformerLens before 4.0
    pytest.skip("TransformerLens >= 4 (TransformerBridge) is needed", allow_module_level=True)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(lmlab model, TransformerLens bridge) on the same weights; gains, biases non-trivial."""
    tok = ByteTokenizer()
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layers=3, d_model=48, n_heads=4, context=32,
                      positions="learned", norm="layernorm", ffn="mlp", activation="gelu_tanh", bias=True)
    model = Transformer(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.3 * torch.randn_like(p))
    out = tmp_path_factory.mktemp("hf")
    hf.export(model, tok, out)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32,
                                                                 attn_implementation="eager").eval()
    bridge = TransformerBridge.boot_transformers(str(out), hf_model=hf_model,
                                                 tokenizer=transformers.AutoTokenizer.from_pretrained(str(out)))
    return model, bridge


def test_activations_match_transformer_lens_at_the_mapped_names(pair):
    model, bridge = pair
    ids = torch.randint(0, 257, (2, 20), generator=torch.Generator().manual_seed(1))
    logits, ours = run_with_cache(model, ids)
    with torch.no_grad():
        theirs_logits, theirs = bridge.run_with_cache(ids)
    torch.testing.assert_close(theirs_logits, logits, atol=1e-4, rtol=0)
    compared = 0
    future = torch.ones(20, 20, dtype=torch.bool).triu(1)
    for name in hook_names(model):
        tl = transformer_lens_name(name)
        if tl is None or tl not in theirs:
            continue
        a, b = ours[name], theirs[tl]
        if name.endswith("attn.scores"):  # masked entries: -inf here, the dtype's minimum there
            a, b = a[..., ~future], b[..., ~future]
        torch.testing.assert_close(b, a, atol=1e-4, rtol=0, msg=f"{name} vs {tl}")
        compared += 1
    assert compared == 4 + 3 * 17  # embed, pos_embed, final, its scale; 17 per block (all but head_out)


def test_composition_scores_match_transformer_lens(pair):
    model, bridge = pair
    bridge.enable_compatibility_mode(disable_warnings=True)  # fold_ln + center_writing_weights
    heads = Heads(model)
    for mode in "QKV":
        theirs = bridge.all_composition_scores(mode).scores.detach()
        torch.testing.assert_close(heads.grid(heads.composition(mode)), theirs, atol=1e-4, rtol=0)
    ov = bridge.OV
    torch.testing.assert_close(heads.OV.singular_values(), ov.S.reshape(-1, ov.S.shape[-1]).detach(), atol=1e-4, rtol=1e-4)
