"""The ordinary learned lookup table."""
import torch
from torch import nn


class TrainableEmbedding(nn.Module):
    frozen = False

    def __init__(self, vocab_size: int, d_model: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, d_model))

    def forward(self, idx):
        return nn.functional.embedding(idx, self.weight)
