"""The ordinary learned lookup table."""
import torch
from torch import nn

from . import EMBEDDINGS


class TrainableEmbedding(nn.Module):
    frozen = False

    def __init__(self, vocab_size: int, d_model: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, d_model))

    @classmethod
    def from_config(cls, cfg, matrix=None) -> "TrainableEmbedding":
        if matrix is not None:
            raise ValueError("model.embedding='trainable' is initialised by the model; it takes no matrix")
        return cls(cfg.vocab_size, cfg.d_model)

    def forward(self, idx):
        return nn.functional.embedding(idx, self.weight)


EMBEDDINGS.register("trainable", TrainableEmbedding.from_config)
