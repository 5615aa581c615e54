"""Paper claims with our verdicts: the entries of every results JSON's `claims` list, and their index.

An experiment puts one `claim(...)` per paper claim it measures into its results JSON; `index()`
gathers them from every JSON under a folder, adds the hand-kept "not measured" rows of papers that
lmlab builds but no experiment measures (docs/experiments/not-measured.toml, reasons only), and
renders one markdown table with one row per paper (`lmlab experiment index`).
"""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

from ..errors import LmlabError

VERDICTS = ("holds", "does not hold at this scale", "mixed", "not measurable here")
FIELDS = ("paper", "claim", "setting", "number", "verdict", "why", "report", "command")
NOT_MEASURED = "not-measured.toml"
INDEX_PAGE = "docs/experiments/README.md"  # where the links are written from


def claim(paper: str, claim: str, setting: str, number: str, verdict: str, why: str, report: str,
          command: str) -> dict:
    """One entry of a results JSON's `claims` list; the verdict must be one of VERDICTS."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {VERDICTS}")
    return {"paper": paper, "claim": claim, "setting": setting, "number": number, "verdict": verdict, "why": why,
            "report": report, "command": command}


def verdict_by_rule(better: bool, worse: bool) -> str:
    """The verdict of a claim that something improves: holds if it does, not at this scale if it is
    worse, mixed otherwise (within noise, or better on one measure and worse on another)."""
    return "holds" if better and not worse else "does not hold at this scale" if worse and not better else "mixed"


PASSKEY_LEARNED = 0.5  # exact match at the training length needed before beyond-length figures mean anything


def passkey_verdict(at_training_length: float, gains: list[bool]) -> tuple[str, str]:
    """LM-Infinite's passkey claim, one rule for every experiment that measures it: `gains` says per key
    depth whether LM-Infinite beat vanilla beyond the training length (each caller's own noise test)."""
    if at_training_length < PASSKEY_LEARNED:
        return "not measurable here", (f"the model retrieves {at_training_length:.2f} of the keys at its own training "
                                       f"length (needs {PASSKEY_LEARNED})")
    if all(gains):
        return "holds", "LM-Infinite beats vanilla beyond the training length at every depth"
    if any(gains):
        return "mixed", "LM-Infinite helps only at some depths (the key within n_local of the question)"
    return "does not hold at this scale", "no gain over vanilla beyond the training length"


def paper_key(title: str) -> str:
    """Titles match on the part before a colon, case-insensitively ('LM-Infinite: Simple ...' = 'lm-infinite')."""
    return title.split(":")[0].strip().lower()


# --- gathering ------------------------------------------------------------------------------------
def measured(folder) -> list[dict]:
    """Every well-formed claim in the JSON files under `folder` (recursively), in path order."""
    rows = []
    for path in sorted(Path(folder).rglob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if not isinstance(data, dict) or not isinstance(data.get("claims"), list):
            continue
        for c in data["claims"]:
            if isinstance(c, dict) and c.get("verdict") in VERDICTS and all(isinstance(c.get(f), str) for f in FIELDS):
                rows.append({**{f: c[f] for f in FIELDS}, "source": path.relative_to(Path(folder).parent).as_posix()})
    return rows


def not_measured(path) -> list[dict]:
    """The hand-kept rows: [[paper]] tables with title, built (what lmlab has), why (no numbers)."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise LmlabError(f"{path}: not valid TOML ({e})") from None
    rows = []
    for i, p in enumerate(data.get("paper", [])):
        missing = [k for k in ("title", "built", "why") if not isinstance(p.get(k), str)]
        if missing:
            raise LmlabError(f"{path}: paper {i + 1} lacks {', '.join(missing)}")
        rows.append(p)
    return rows


# --- the table ------------------------------------------------------------------------------------
def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _joined(items: list[str]) -> str:
    if len(items) == 1:
        return _cell(items[0])
    return "<br>".join(f"({i + 1}) {_cell(x)}" for i, x in enumerate(items))


def _link(report: str) -> str:
    """A link to `report` (a path from the repository root) from the index's place, docs/experiments/."""
    import os

    return f"[{Path(report).name}]({Path(os.path.relpath(report, Path(INDEX_PAGE).parent)).as_posix()})"


def table(claims: list[dict], unmeasured: list[dict]) -> str:
    """One row per paper: its claims numbered within the cells, or the not-measured row's reason."""
    papers: dict[str, list[dict]] = {}
    titles: dict[str, str] = {}
    for c in claims:
        key = paper_key(c["paper"])
        papers.setdefault(key, []).append(c)
        titles.setdefault(key, c["paper"])
    lines = ["| paper | claim | our setting | our number | verdict | report | command |",
             "|---|---|---|---|---|---|---|"]
    for key, cs in papers.items():
        reports = list(dict.fromkeys(c["report"] for c in cs))
        commands = list(dict.fromkeys(c["command"] for c in cs))
        lines.append("| " + " | ".join([
            _cell(titles[key]), _joined([c["claim"] for c in cs]), _joined([c["setting"] for c in cs]),
            _joined([c["number"] for c in cs]), _joined([f"**{c['verdict']}**: {c['why']}" for c in cs]),
            "<br>".join(_link(r) for r in reports), "<br>".join(f"`{_cell(x)}`" for x in commands)]) + " |")
    for p in unmeasured:
        if paper_key(p["title"]) in papers:
            continue
        lines.append(f"| {_cell(p['title'])} | - | {_cell(p['built'])} | - | **not measured**: {_cell(p['why'])} | "
                     f"{_link(p['report']) if p.get('report') else '-'} | - |")
    return "\n".join(lines) + "\n"


def index(folder, page) -> Path:
    """Write `page` (docs/experiments/README.md) from the claims under `folder` (docs)."""
    from .common import write_text

    folder, page = Path(folder), Path(page)
    claims = measured(folder)
    unmeasured = not_measured(next(iter(sorted(folder.rglob(NOT_MEASURED))), folder / NOT_MEASURED))
    sources = sorted({c["source"] for c in claims})
    text = ("# The seed papers' claims, and what we measured\n\n"
            "Generated by `lmlab experiment index` (also run at the end of `lmlab experiment all`) from the "
            "`claims` list of every results JSON under `" + folder.name + "/`, plus the papers lmlab builds "
            f"but no experiment measures yet (`{NOT_MEASURED}`). Do not edit by hand. Verdicts: "
            + ", ".join(f"*{v}*" for v in VERDICTS) + ". A paper with several claims numbers them within its "
            "row.\n\n" + table(claims, unmeasured)
            + "\nSources: " + (", ".join(f"`{s}`" for s in sources) or "none") + ".\n")
    return write_text(page, text)
