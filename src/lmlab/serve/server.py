"""Putting a server together: the slots a model can use, the engine, the app, uvicorn on a socket."""
from __future__ import annotations

import socket

from .app import Settings, create_app
from .engine import Engine
from .slots import SeparateSlots, SharedSlots, shares_forward


def make_engine(model, tokenizer, max_batch: int, max_queue: int, lm_infinite: tuple[int, int] | None = None) -> Engine:
    """An engine over `max_batch` slots: one shared batched cache where the model allows it,
    else one cache per slot (LM-Infinite, recurrent mixers, meta-tokens)."""
    device = next(model.parameters()).device
    if lm_infinite is not None:
        from ..infer import lminfinite

        policy = lminfinite.enable(model, *lm_infinite)
        slots = SeparateSlots(model, max_batch, lambda: lminfinite.new_cache(model),
                              lambda x, cache: lminfinite.chunked_logits(model, x, policy.n_local, cache))
    elif shares_forward(model):
        slots = SharedSlots(model, max_batch, model.cfg.context, device)
    else:
        slots = SeparateSlots(model, max_batch, lambda: model.new_cache(model.cfg.context))
    return Engine(model, tokenizer, slots, max_queue)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one), so the caller knows the port before serving."""
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(info[4])
    sock.listen(2048)
    return sock


def uvicorn_server(engine: Engine, tokenizer, settings: Settings, log_level: str = "warning"):
    """A uvicorn.Server for the app; `.run(sockets=[sock])` serves until SIGINT/SIGTERM (in the main
    thread) or `.should_exit = True`, and then lets running requests finish."""
    import uvicorn

    config = uvicorn.Config(create_app(engine, tokenizer, settings), log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=None)
    return uvicorn.Server(config)
