"""Run as every rank of a 2-rank gloo group (tests/test_parallel_tp.py): for each model variant,
one forward and backward of the tensor-parallel model next to the same model in one process;
rank 0 writes the largest differences of loss, logits and gradients as JSON to argv[1]."""
import json
import sys

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh

from lmlab import config
from lmlab.model import Transformer
from lmlab.train import tp

VARIANTS = {
    "mha, mlp, layernorm, tied": [],
    "gqa, swiglu, rmsnorm, untied": ["model.n_heads=4", "model.n_kv_heads=2", "model.ffn=swiglu",
                                     "model.norm=rmsnorm", "model.tie_embeddings=false"],
    "learned positions, bias, exact gelu": ["model.positions=learned", "model.bias=true", "model.activation=gelu"],
    "moe (replicated experts)": ["model.ffn=moe"],
    "crmsnorm": ["model.norm=crmsnorm"],
}
VOCAB = 65  # odd: the vocabulary splits unevenly over 2 ranks


def compare(overrides, mesh) -> dict:
    cfg = config.load("tiny", [*overrides, f"model.vocab_size={VOCAB}"]).model
    torch.manual_seed(0)
    ref = Transformer(cfg)
    model = Transformer(cfg)
    model.load_state_dict(ref.state_dict())
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, VOCAB, (2, cfg.context), generator=gen)
    y = torch.randint(0, VOCAB, (2, cfg.context), generator=gen)
    _, ref_loss = ref(x, y)
    ref_loss.backward()
    tp.parallelize(model, mesh)
    with tp.loss_context():
        _, loss = model(x, y)
        loss.backward()
    ref.eval(), model.eval()
    with torch.no_grad():
        ref_logits, logits = ref(x)[0], model(x)[0]
    grads = {n: p.grad.full_tensor() for n, p in model.named_parameters()}
    return {"loss": abs(loss.item() - ref_loss.item()), "ref_loss": ref_loss.item(),
            "logits": (logits - ref_logits).abs().max().item(), "logits_type": type(logits).__name__,
            "grads": max((grads[n] - p.grad).abs().max().item() for n, p in ref.named_parameters()),
            "grad_scale": max(p.grad.abs().max().item() for p in ref.parameters()),
            "names_equal": list(grads) == [n for n, _ in ref.named_parameters()]}


def main():
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    results = {name: compare(overrides, mesh) for name, overrides in VARIANTS.items()}
    if dist.get_rank() == 0:
        with open(sys.argv[1], "w") as f:
            json.dump(results, f, indent=1)
    dist.barrier()  # leave together: gloo sometimes aborts a rank that tears down while another still works
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
