"""`lmlab serve RUN_OR_CKPT [--host H] [--port P] [...]`: an OpenAI-compatible HTTP server."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from ..errors import LmlabError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API (continuous batching, "
                                     "streaming, a playground page at /)")
    p.add_argument("run", metavar="RUN_OR_CKPT")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free one, printed at start)")
    p.add_argument("--api-key", default=os.environ.get("LMLAB_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on the API routes (default: $LMLAB_API_KEY)")
    p.add_argument("--model-name", help="the model's name in the API (default: the run directory's name)")
    p.add_argument("--max-batch", type=int, default=16, help="sequences decoded together (KV-cache slots)")
    p.add_argument("--max-queue", type=int, default=256, help="sequences waiting for a slot before 429")
    p.add_argument("--max-tokens-limit", type=int, help="largest max_tokens a request may ask for "
                   "(default: the model's context)")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", help="sampling precision as for lmlab generate (default: the config's generate.dtype)")
    p.add_argument("--lm-infinite", action="store_true", help="LM-Infinite attention: prompt plus output may "
                   "exceed the context (each sequence then decodes in its own forward pass)")
    p.add_argument("--n-global", type=int, default=10, help="LM-Infinite: starting tokens every query sees")
    p.add_argument("--n-local", type=int, default=0, help="LM-Infinite: recent tokens every query sees (0 = context)")
    p.set_defaults(func=run)


def check_ranges(args) -> None:
    from ..infer.prepare import DTYPE_NAMES

    checks = [("--port", args.port, 0, 65535), ("--max-batch", args.max_batch, 1, 1024),
              ("--max-queue", args.max_queue, 1, 1 << 20), ("--max-body-bytes", args.max_body_bytes, 1024, 1 << 30),
              ("--n-global", args.n_global, 0, 1 << 20), ("--n-local", args.n_local, 0, 1 << 30)]
    if args.max_tokens_limit is not None:
        checks.append(("--max-tokens-limit", args.max_tokens_limit, 1, 1 << 30))
    for flag, value, lo, hi in checks:
        if not lo <= value <= hi:
            raise LmlabError(f"{flag} must be in [{lo}, {hi}], got {value}")
    if args.dtype is not None and args.dtype not in DTYPE_NAMES:
        raise LmlabError(f"--dtype {args.dtype!r} unknown; valid: {', '.join(DTYPE_NAMES)}")
    if args.api_key is not None and not args.api_key.strip():
        raise LmlabError("--api-key is empty")
    if not args.host:
        raise LmlabError("--host is empty")


def run(args) -> int:
    check_ranges(args)
    from ..serve.app import Settings, starlette_modules

    starlette_modules()
    from ..infer.prepare import for_inference
    from ..serve.protocol import Limits
    from ..serve.server import bind, make_engine, uvicorn_server
    from .common import load_model_arg

    from .generate import require_causal

    model, tokenizer, cfg = load_model_arg(args.run, args.device)
    require_causal(cfg)
    model = for_inference(model, args.dtype or cfg.generate.dtype, next(model.parameters()).device)
    context = model.cfg.context
    limit = args.max_tokens_limit or context
    lm_inf = (args.n_global, args.n_local or None) if args.lm_infinite else None
    engine = make_engine(model, tokenizer, args.max_batch, args.max_queue, lm_inf)
    name = args.model_name or Path(args.run).resolve().name
    settings = Settings(name, Limits(None if lm_inf else context, limit, tokenizer.vocab_size), args.api_key,
                        args.max_body_bytes)
    try:
        sock = bind(args.host, args.port)
    except OSError as e:
        raise LmlabError(f"cannot listen on {args.host}:{args.port} ({e.strerror or e})") from None
    host, port = sock.getsockname()[:2]
    if args.host not in LOOPBACK and args.api_key is None:
        print(f"warning: listening on {args.host} without --api-key: anyone who can reach it can use it",
              file=sys.stderr)
    url_host = f"[{host}]" if ":" in host else host
    print(f"serving {name} on http://{url_host}:{port} (playground at /, API at /v1; {args.max_batch} slots"
          f"{', LM-Infinite' if lm_inf else ''}); Ctrl-C or SIGTERM stops after running requests finish",
          file=sys.stderr, flush=True)
    # uvicorn re-raises the signal that stopped it once it has drained; a stop asked for is a clean exit
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    uvicorn_server(engine, tokenizer, settings).run(sockets=[sock])
    print(f"stopped; {engine.generated_tokens} tokens generated", file=sys.stderr)
    return 0
