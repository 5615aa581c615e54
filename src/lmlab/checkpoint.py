"""Checkpoints: model.safetensors + optim.pt (tensors only, loaded with weights_only=True) +
state.json + tokenizer/. A checkpoint directory is complete or absent: it is written to a
temporary directory, fsynced and renamed; `latest` names the newest one and is replaced atomically.
Loading never unpickles code. A process that writes a run directory holds its lock (`run_lock`).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import config as config_mod
from . import jsonio
from . import tokenizers
from .errors import LmlabError

CKPT_DIR = "checkpoints"
LATEST = "latest"
LOCK = ".lock"


def _open_locked(path: Path) -> int:
    """A descriptor of `path` holding its exclusive flock, or LmlabError naming the holder's pid."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise LmlabError(f"{path.parent} is being written by another lmlab process (pid {holder}); "
                             "wait for it to finish or choose another directory") from None
        try:  # the previous holder may have removed the file between our open and our flock
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def run_lock(out_dir):
    """Hold OUT/.lock exclusively (fcntl.flock, released by the kernel even on SIGKILL) with this
    process's pid in it. A second writer is refused at once; readers never take it. The file is
    removed on release, and so is OUT if this call created it and nothing else was written."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LmlabError(f"{out} is a file, not a run directory; choose a directory for -o")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise LmlabError(f"cannot create the run directory {out}: a part of that path is a file") from None
    except OSError as e:
        raise LmlabError(f"cannot create the run directory {out}: {e.strerror}") from None
    path = out / LOCK
    try:
        fd = _open_locked(path)
    except BaseException:
        if created:
            _remove_if_empty(out)
        raise
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield out
    finally:
        path.unlink(missing_ok=True)  # while still holding it: a waiter re-checks the inode
        os.close(fd)
        if created:
            _remove_if_empty(out)


def _remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


def step_name(step: int) -> str:
    return f"step_{step:07d}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_tensors(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}


def save(out_dir, step: int, model, optimizer, tokenizer, cfg, state: dict, keep_last: int = 2) -> Path:
    root = Path(out_dir) / CKPT_DIR
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{step_name(step)}-", dir=root))
    try:
        save_file(model_tensors(model), tmp / "model.safetensors")
        if optimizer is not None:
            torch.save({"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
                       tmp / "optim.pt")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return publish(tmp, step, tokenizer, cfg, {"model_sha256": sha256_file(tmp / "model.safetensors"), **state},
                   keep_last)


def publish(tmp: Path, step: int, tokenizer, cfg, state: dict, keep_last: int = 2) -> Path:
    """Finish a checkpoint whose tensors are in `tmp` (inside checkpoints/): tokenizer and
    state.json, fsync, rename to step_NNNNNNN, then `latest`, then prune."""
    root = tmp.parent
    try:
        tokenizer.save(tmp / "tokenizer")
        full_state = {"step": step, "config": config_mod.to_dict(cfg), **state}
        (tmp / "state.json").write_text(jsonio.dumps(full_state, indent=1))
        _fsync_tree(tmp)
        final = root / step_name(step)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    latest_tmp = root / f".{LATEST}.tmp"
    latest_tmp.write_text(step_name(step))
    with open(latest_tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(latest_tmp, root / LATEST)
    _fsync_dir(root)
    prune(root, keep_last)
    return final


def prune(root: Path, keep_last: int) -> None:
    if keep_last <= 0:
        return
    steps = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in steps[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-*"):  # left by a killed run; never complete
        shutil.rmtree(stale, ignore_errors=True)


def resolve(path) -> Path:
    """A checkpoint directory, or a run directory whose latest checkpoint is meant."""
    p = Path(path)
    if (p / "state.json").is_file():
        return p
    latest = p / CKPT_DIR / LATEST
    if latest.is_file():
        ckpt = p / CKPT_DIR / latest.read_text().strip()
        if (ckpt / "state.json").is_file():
            return ckpt
        raise LmlabError(f"{p}: 'latest' names {ckpt.name}, which is missing or incomplete")
    if not p.exists():
        raise LmlabError(f"{p} does not exist")
    raise LmlabError(f"{p} is neither a run directory nor a checkpoint (no state.json, no {CKPT_DIR}/{LATEST})")


def read_state(ckpt: Path) -> dict:
    try:
        return json.loads((ckpt / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise LmlabError(f"checkpoint {ckpt}: state.json is unreadable or truncated ({e.__class__.__name__})") from None


def load_tensors(ckpt: Path, state: dict, verify: bool = True) -> dict[str, torch.Tensor]:
    if state.get("format") == "dcp":  # written in shards by several ranks
        from . import checkpoint_dcp

        return checkpoint_dcp.read_model(ckpt, state, verify)
    path = ckpt / "model.safetensors"
    if not path.is_file():
        raise LmlabError(f"checkpoint {ckpt}: model.safetensors is missing")
    if verify and state.get("model_sha256") and sha256_file(path) != state["model_sha256"]:
        raise LmlabError(f"checkpoint {ckpt}: model.safetensors is corrupted or truncated (checksum mismatch)")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise LmlabError(f"checkpoint {ckpt}: model.safetensors is corrupted or truncated ({e})") from None


def load_optim(ckpt: Path) -> dict | None:
    if (ckpt / "dcp").is_dir():
        from . import checkpoint_dcp

        return checkpoint_dcp.read_optim(ckpt, read_state(ckpt))
    path = ckpt / "optim.pt"
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle with code: both refused
        raise LmlabError(f"checkpoint {ckpt}: optim.pt is corrupted or unsafe ({e.__class__.__name__})") from None


def load_model(path, device="cpu"):
    """(model, tokenizer, cfg) from a run or checkpoint directory, in eval mode."""
    from .model import Transformer

    ckpt = resolve(path)
    state = read_state(ckpt)
    cfg = config_mod.from_dict(state["config"])
    tokenizer = tokenizers.load(ckpt / "tokenizer")
    model = Transformer(cfg.model)  # a frozen embedding built outside the model starts as zeros: loaded below
    tensors = load_tensors(ckpt, state)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise LmlabError(f"checkpoint {ckpt} does not match its config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.to(device).eval(), tokenizer, cfg
