"""Data for the lm-eval tasks shipped in the repository's tasks/ folder, made at run time.

The YAML files in tasks/ name their data relative to a data folder (`data_files: {test:
continuation/test.jsonl}`): each first path part is a generator of this package, run with its
default settings (`lmlab task make NAME`), or `heldout_text`, the held-out text of the shared
corpus as whole documents. Nothing of ../shared/data is copied into the repository: the files
are generated into $LMLAB_CACHE/harness/ on first use (a few seconds) and reused while their
settings match; resolved copies of the YAML files, with absolute paths, go to
$LMLAB_CACHE/harness/tasks/, the include path handed to lm-eval.
"""
from __future__ import annotations

import json
from pathlib import Path

from ...data.corpora import cache_root
from ...data.task_files import META, Example, line
from ...errors import LmlabError

TASKS_DIR = Path(__file__).resolve().parents[4] / "tasks"
HELDOUT_TEXT = "heldout_text"


def shipped_tasks() -> dict[str, Path]:
    """task name -> its YAML in tasks/."""
    import yaml

    out = {}
    for path in sorted(TASKS_DIR.glob("*.yaml")):
        name = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("task")
        if name:
            out[name] = path
    return out


def _data_paths(files) -> list[str]:
    if isinstance(files, str):
        return [files]
    if isinstance(files, dict):
        return [p for v in files.values() for p in _data_paths(v)]
    return [p for v in files for p in _data_paths(v)]


def _resolve(files, root: Path):
    if isinstance(files, str):
        return str(root / files)
    if isinstance(files, dict):
        return {k: _resolve(v, root) for k, v in files.items()}
    return [_resolve(v, root) for v in files]


def heldout_documents(corpus: str = "tinyshakespeare", heldout: float = 0.1) -> list[Example]:
    """The test half of the held-out tail of each document (what the continuation task's test
    items are cut from), one document per line, as {"input": "", "target": text}."""
    from .continuation import prepare

    parts = prepare({"corpus": corpus, "heldout": heldout})["parts"]["test"]
    return [Example("", d.text) for d in parts]


def _generate(name: str, root: Path) -> None:
    from . import get, make

    out = root / name
    if name == HELDOUT_TEXT:
        if not (out / "test.jsonl").is_file():
            out.mkdir(parents=True, exist_ok=True)
            (out / "test.jsonl").write_text("".join(line(e) for e in heldout_documents()), encoding="utf-8")
        return
    settings = get(name).settings([])
    meta = out / META
    if meta.is_file() and json.loads(meta.read_text(encoding="utf-8")).get("settings") == settings:
        return
    make(name, [], out)


def prepare(root: Path | None = None) -> Path:
    """Generate the shipped tasks' data (once) and return the folder of resolved YAML files."""
    import yaml

    root = root or cache_root() / "harness"
    resolved = root / "tasks"
    resolved.mkdir(parents=True, exist_ok=True)
    for name, path in shipped_tasks().items():
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
        files = cfg.get("dataset_kwargs", {}).get("data_files")
        if files is None:
            raise LmlabError(f"{path}: a shipped task needs dataset_kwargs.data_files")
        for part in sorted({Path(p).parts[0] for p in _data_paths(files)}):
            _generate(part, root)
        cfg["dataset_kwargs"]["data_files"] = _resolve(files, root)
        (resolved / path.name).write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return resolved
