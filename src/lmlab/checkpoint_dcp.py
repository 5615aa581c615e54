"""Sharded checkpoints in torch.distributed.checkpoint's format (for FSDP and TP runs).

Every rank writes its own shards of the model and optimizer state (nothing is gathered on one
rank) into `step_NNNNNNN/dcp/`; rank 0 then adds rng.pt, tokenizer/ and state.json
(`"format": "dcp"`, the optimizer's param_groups, a SHA-256 per file) and renames the
directory, so it stays complete or absent. Any number of processes reads it back (DCP reshards):
`checkpoint.load_tensors` / `load_optim` return full tensors for one process, exactly as from
model.safetensors / optim.pt, so resume on other ranks, generate, eval and export all work.

Loading unpickles nothing it does not know: DCP's `.metadata` file is a pickle, read here with
an unpickler that admits only DCP's own metadata classes, torch dtypes and sizes; tensors are
read with weights_only=True, and only tensors are ever written (no pickled Python objects).
"""
from __future__ import annotations

import contextlib
import json
import pickle
import warnings
from pathlib import Path

import torch

from .errors import LmlabError

DIR = "dcp"

# (module, name) pairs a DCP .metadata pickle may name; anything else is refused
_META_CLASSES = {
    ("torch.distributed.checkpoint.metadata", n) for n in (
        "Metadata", "TensorStorageMetadata", "TensorProperties", "ChunkStorageMetadata", "MetadataIndex",
        "StorageMeta", "_MEM_FORMAT_ENCODING")
} | {("torch.distributed.checkpoint.filesystem", "_StorageInfo"), ("torch", "Size"),
     ("torch.serialization", "_get_layout"), ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"),
     ("pathlib", "PurePosixPath"), ("pathlib", "PureWindowsPath")}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _META_CLASSES:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a DCP checkpoint's metadata")


def _reader(path: Path):
    from torch.distributed.checkpoint import FileSystemReader

    class SafeReader(FileSystemReader):
        """DCP's file reader, with its metadata pickle read by the restricted unpickler."""

        def read_metadata(self, *args, **kwargs):
            from torch.distributed.checkpoint.metadata import StorageMeta

            with open(Path(self.path) / ".metadata", "rb") as f:
                metadata = _MetadataUnpickler(f).load()
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return SafeReader(str(path))


@contextlib.contextmanager
def _one_process_is_meant():
    """DCP warns that it assumes one process when no process group is up: that is the intent."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def file_hashes(path: Path) -> dict[str, str]:
    from .checkpoint import sha256_file

    return {p.name: sha256_file(p) for p in sorted(path.iterdir()) if p.is_file()}


def _metadata(ckpt: Path, state: dict, verify: bool):
    path = ckpt / DIR
    if not (path / ".metadata").is_file():
        raise LmlabError(f"checkpoint {ckpt}: {DIR}/.metadata is missing")
    if verify and state.get("dcp_sha256") and file_hashes(path) != state["dcp_sha256"]:
        raise LmlabError(f"checkpoint {ckpt}: the {DIR}/ shards are corrupted, truncated or incomplete (checksum mismatch)")
    reader = _reader(path)
    try:
        return reader, reader.read_metadata()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as e:
        raise LmlabError(f"checkpoint {ckpt}: {DIR}/.metadata is unreadable or unsafe ({e})") from None


def _read(ckpt: Path, state: dict, verify: bool, top: str) -> dict:
    """The entries under `top` ("model", "optim") as full tensors, nested as they were saved."""
    import torch.distributed.checkpoint as dcp

    reader, metadata = _metadata(ckpt, state, verify)
    nested: dict = {}
    for key, md in metadata.state_dict_metadata.items():
        path = metadata.planner_data[key]
        if path[0] != top:
            continue
        if not hasattr(md, "size"):  # lmlab writes tensors only
            raise LmlabError(f"checkpoint {ckpt}: {DIR}/ holds a non-tensor entry {key!r}; refused")
        node = nested
        for part in path[1:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = torch.empty(md.size, dtype=md.properties.dtype)
    # a local read: every process (one, or each rank on resume) reads the whole state on its own
    with _one_process_is_meant():
        dcp.load({top: nested}, storage_reader=reader, no_dist=True)
    return nested


def read_model(ckpt: Path, state: dict, verify: bool = True) -> dict[str, torch.Tensor]:
    """The full model state (what model.safetensors would hold), in one process."""
    return _read(ckpt, state, verify, "model")


def read_optim(ckpt: Path, state: dict) -> dict:
    """What optim.pt would hold: the full optimizer state keyed by position, and rank 0's RNG."""
    tensors = _read(ckpt, state, True, "optim").get("state", {})
    groups = state["param_groups"]
    index = {name: i for i, name in enumerate(n for g in groups for n in g["params"])}
    # JSON turned the hyperparameters' tuples (betas) into lists: back to what torch.optim holds
    groups = [{**{k: tuple(v) if isinstance(v, list) else v for k, v in g.items()},
               "params": [index[n] for n in g["params"]]} for g in groups]
    optimizer = {"state": {index[name]: v for name, v in tensors.items()}, "param_groups": groups}
    rng = torch.load(ckpt / "rng.pt", map_location="cpu", weights_only=True)
    return {"optimizer": optimizer, **rng}


def save(out_dir, step: int, model, optimizer, tokenizer, cfg, state: dict, keep_last: int = 2) -> Path:
    """Every rank calls this (a collective): each writes its shards, rank 0 finishes the directory."""
    import shutil

    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    from . import checkpoint

    several = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    main = not several or dist.get_rank() == 0
    root = Path(out_dir) / checkpoint.CKPT_DIR
    tmp = root / f".tmp-{checkpoint.step_name(step)}-{DIR}"  # one name all ranks know
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / DIR).mkdir(parents=True)
    if several:
        dist.barrier()
    # the model's first: FSDP keeps the root unsharded after a forward without backward (an
    # evaluation); its state_dict reshards it, so the parameters are the optimizer's again
    msd = get_model_state_dict(model)
    osd = get_optimizer_state_dict(model, optimizer)
    with _one_process_is_meant():
        dcp.save({"model": msd, "optim": {"state": osd["state"]}},
                 storage_writer=dcp.FileSystemWriter(str(tmp / DIR)), no_dist=not several)
    if several:
        dist.barrier()  # every rank's shards are on disk
    if not main:
        return root / checkpoint.step_name(step)
    torch.save({"torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}, tmp / "rng.pt")
    groups = json.loads(json.dumps(osd["param_groups"]))  # hyperparameters and parameter names only
    return checkpoint.publish(tmp, step, tokenizer, cfg,
                              {"format": "dcp", "param_groups": groups, "dcp_sha256": file_hashes(tmp / DIR), **state},
                              keep_last)
