"""Kept for old imports: checkpoints live in lmlab.checkpoint."""
from ..checkpoint import *  # noqa: F401,F403
from ..checkpoint import (CKPT_DIR, LATEST, load_model, load_optim, load_tensors, model_tensors,  # noqa: F401
                          prune, read_state, resolve, save, sha256_file, step_name)
