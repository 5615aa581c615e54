"""A progress bar for `lmlab analyze`: counts the model's forward passes on stderr.

The analyses call the model in loops of unknown length (windows, greedy decoding, scales times
controls), so the bar counts forward passes (a hook on the model), with a total where the caller
knows one. tqdm turns itself off when stderr is not a terminal; `show=False` turns it off always.
Nothing is printed on stdout, and the hook is removed on leaving, even after an error.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager


@contextmanager
def forward_bar(model, desc: str, show: bool = True, total: int | None = None):
    """Inside: a tqdm bar on stderr, advanced once per forward call of `model`; yields the bar."""
    from tqdm.auto import tqdm

    # disable=None: tqdm's own rule, off when stderr is not a TTY
    bar = tqdm(total=total, desc=desc, unit="pass", file=sys.stderr, leave=False, dynamic_ncols=True,
               disable=None if show else True)
    handle = model.register_forward_hook(lambda *_: bar.update(1))
    try:
        yield bar
    finally:
        handle.remove()
        bar.close()
