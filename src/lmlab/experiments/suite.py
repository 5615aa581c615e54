"""`lmlab experiment all` (every registered experiment in one go) and `lmlab experiment index`.

`all` finds the experiments by the same discovery the CLI uses, so one added later is included
without an edit here. With --quick each runs its smoke mode, and every output folder it would
write by default (a `runs/...` or `docs...` default) is moved under OUT/NAME/, so nothing in
the checkout changes; the claims index is then built from what they wrote.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import LmlabError
from . import claims, discover

INDEX_PAGE = claims.INDEX_PAGE


def add_all_arguments(p) -> None:
    p.add_argument("--quick", action="store_true", help="every experiment's --quick, outputs under --out")
    p.add_argument("--out", default="runs/experiments-quick",
                   help="with --quick: where the experiments' outputs go (default runs/experiments-quick)")
    p.add_argument("--skip", default="", help="comma-separated experiments not to run")
    p.add_argument("--index", default="", help="the claims index page to write at the end (default: "
                                               f"{INDEX_PAGE}, or OUT/README.md with --quick)")


def add_index_arguments(p) -> None:
    p.add_argument("--results", default="docs", help="folder searched (recursively) for results JSON with claims")
    p.add_argument("--page", default=INDEX_PAGE, help=f"the page to write (default {INDEX_PAGE})")


def _moved(default, root: Path):
    """A default output path moved under `root` (others unchanged)."""
    if isinstance(default, str) and default and Path(default).parts[0] in ("runs", "docs"):
        return str(root / default)
    return default


def experiment_args(module, quick: bool, root: Path) -> argparse.Namespace:
    """The Namespace `lmlab experiment NAME [--quick]` would give, outputs under `root` when quick."""
    p = argparse.ArgumentParser(prog=f"lmlab experiment {module.NAME}")
    if hasattr(module, "add_arguments"):
        module.add_arguments(p)
    args = p.parse_args(["--quick"] if quick else [])
    if quick:
        for action in p._actions:
            if action.dest != "help":
                setattr(args, action.dest, _moved(getattr(args, action.dest), root))
    return args


def run_all(args) -> int:
    found = discover()
    skip = [x.strip() for x in args.skip.split(",") if x.strip()]
    unknown = [x for x in skip if x not in found]
    if unknown:
        raise LmlabError(f"--skip: unknown experiment {', '.join(map(repr, unknown))}; valid: {', '.join(sorted(found))}")
    out = Path(args.out)
    failed = []
    for name in sorted(found):
        if name in skip:
            continue
        module = found[name]
        t0 = time.perf_counter()
        print(f"== lmlab experiment {name}{' --quick' if args.quick else ''}", flush=True)
        try:
            rc = module.run(experiment_args(module, args.quick, out / name))
        except LmlabError as e:
            print(f"error: {name}: {e}", file=sys.stderr)
            rc = 2
        if rc:
            failed.append(name)
        print(f"== {name}: {'failed' if rc else 'done'} in {time.perf_counter() - t0:.0f} s", flush=True)
    folder, page = (out, Path(args.index or out / "README.md")) if args.quick else \
        (Path("docs"), Path(args.index or INDEX_PAGE))
    print(f"wrote {claims.index(folder, page)}")
    if failed:
        print(f"error: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def run_index(args) -> int:
    folder = Path(args.results)
    if not folder.is_dir():
        raise LmlabError(f"--results {folder}: not a folder")
    print(f"wrote {claims.index(folder, Path(args.page))}")
    return 0
