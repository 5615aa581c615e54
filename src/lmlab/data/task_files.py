"""A task directory: train.jsonl, validation.jsonl, test.jsonl (one {"input", "target"} object a
line) and task.json (the generator, its settings, how answers are scored).

The model is shown `input + delimiter + target`, in training, in `lmlab eval --task` and in the
harness tasks alike; the delimiter is a space (lm-evaluation-harness's default) unless task.json
says otherwise (held-out continuations carry their own leading whitespace: "").
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LmlabError
from .corpora import json_lines

SPLITS = ("train", "validation", "test")
DELIMITER = " "
META = "task.json"


@dataclass
class Example:
    input: str
    target: str
    choices: list | None = None   # per-example candidates (multiple choice); the target is one of them


@dataclass
class TaskInfo:
    """What a task directory says about itself (defaults for a directory without task.json)."""
    name: str = ""
    scoring: str = "exact"            # exact: greedy decoding of the target; choice: the likeliest candidate
                                      # (the task's `choices`, or an example's own)
    choices: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    delimiter: str = DELIMITER


def line(example: Example) -> str:
    record = {"input": example.input, "target": example.target}
    if example.choices is not None:
        record["choices"] = example.choices
    return json.dumps(record, ensure_ascii=False) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)


def write_task(out, splits: dict, info: TaskInfo) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        _write_atomic(out / f"{split}.jsonl", "".join(line(e) for e in splits[split]))
    meta = {"task": info.name, "scoring": info.scoring, "choices": info.choices, "settings": info.settings,
            "delimiter": info.delimiter, "sizes": {s: len(splits[s]) for s in SPLITS}}
    _write_atomic(out / META, json.dumps(meta, ensure_ascii=False, indent=1, sort_keys=True) + "\n")
    return out


def read_split(path) -> list[Example]:
    """Examples of one JSONL file; a malformed line is named by file and line number."""
    path = Path(path)
    if not path.is_file():
        raise LmlabError(f"{path} not found")
    out = []
    for n, record in json_lines(path):
        if not (isinstance(record, dict) and isinstance(record.get("input"), str)
                and isinstance(record.get("target"), str)):
            raise LmlabError(f"{path}:{n}: expected an object with string fields \"input\" and \"target\"")
        if not record["target"]:
            raise LmlabError(f"{path}:{n}: the target is empty")
        choices = record.get("choices")
        if choices is not None and not (isinstance(choices, list) and all(isinstance(c, str) and c for c in choices)
                                        and record["target"] in choices):
            raise LmlabError(f"{path}:{n}: \"choices\" must be a list of non-empty strings holding the target")
        out.append(Example(record["input"], record["target"], choices))
    return out


def read_info(directory) -> TaskInfo:
    path = Path(directory) / META
    if not path.is_file():
        return TaskInfo(name=Path(directory).name)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LmlabError(f"{path}: invalid JSON") from None
    info = TaskInfo(meta.get("task", ""), meta.get("scoring", "exact"), list(meta.get("choices", [])),
                    dict(meta.get("settings", {})), meta.get("delimiter", DELIMITER))
    if info.scoring not in ("exact", "choice"):
        raise LmlabError(f"{path}: scoring must be \"exact\" or \"choice\", not {info.scoring!r}")
    return info


def is_task_dir(path) -> bool:
    p = Path(path)
    return p.is_dir() and any((p / f"{s}.jsonl").is_file() for s in SPLITS)
