"""A `lmlab serve` server on a free loopback port, in a thread of the test process."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass
class Running:
    url: str
    engine: object
    model: object
    tokenizer: object

    def load(self) -> dict:
        return self.engine.load()


@contextmanager
def running_server(run_dir, *, dtype="float32", max_batch=4, max_queue=64, api_key=None, lm_infinite=None,
                   context=None, max_body=1 << 20, max_tokens_limit=None, name="tiny"):
    """`context` raises the model's context past what it was trained on (RoPE extends; the text is
    nonsense, but a 64-token model can then generate for seconds, long enough to interrupt)."""
    from lmlab.checkpoint import load_model
    from lmlab.infer.prepare import for_inference
    from lmlab.serve.app import Settings
    from lmlab.serve.protocol import Limits
    from lmlab.serve.server import bind, make_engine, uvicorn_server

    model, tok, _ = load_model(run_dir)
    model = for_inference(model, dtype, torch.device("cpu"))
    if context is not None:
        model.cfg.context = context
    engine = make_engine(model, tok, max_batch, max_queue, lm_infinite)
    ctx = None if lm_infinite else model.cfg.context
    limits = Limits(ctx, max_tokens_limit or model.cfg.context, tok.vocab_size)
    server = uvicorn_server(engine, tok, Settings(name, limits, api_key, max_body))
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield Running(f"http://127.0.0.1:{port}", engine, model, tok)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def wait_until(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
