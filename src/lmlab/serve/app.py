"""The HTTP layer of `lmlab serve` (Starlette, run by uvicorn): OpenAI-compatible routes, API-key
checks, body limits, server-sent events. The event loop never runs the model: requests go to the
engine's worker thread, and results come back through an asyncio queue per request."""
from __future__ import annotations

import asyncio
import functools
import hmac
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import chat, protocol
from .answer import answer, json_bytes
from .engine import Done, Engine, Failed, QueueFull, ShuttingDown
from .protocol import RequestError, TokenLabels

PAGE = Path(__file__).with_name("page") / "index.html"

# an oversized body is still read up to this multiple of the limit before answering 400: a client
# blocked on sending would miss the answer if the server stopped reading at once
DRAIN_FACTOR = 4


def starlette_modules():
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        from ..errors import LmlabError

        raise LmlabError("lmlab serve needs starlette and uvicorn: pip install -e '.[serve]'") from None


@dataclass
class Settings:
    served_name: str
    limits: protocol.Limits
    api_key: str | None = None
    max_body: int = 1 << 20
    retry_after_s: int = 1


class Outbox:
    """Events from the worker thread to the event loop. One wake-up of the loop carries every event
    queued since the last one (a wake-up per event cost a self-pipe write and a loop turn for each
    streamed token of each request)."""

    def __init__(self, loop):
        self.loop, self.items, self.lock, self.scheduled = loop, [], threading.Lock(), False

    def put(self, queue: asyncio.Queue, item) -> None:  # on the worker thread
        with self.lock:
            self.items.append((queue, item))
            if self.scheduled:
                return
            self.scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the event loop has closed
            pass

    def _drain(self) -> None:
        with self.lock:
            items, self.items, self.scheduled = self.items, [], False
        for queue, item in items:
            queue.put_nowait(item)


class Pending:
    """One request's sequences, and the asyncio queue their events arrive on from the worker."""

    def __init__(self, engine: Engine, job: protocol.Job, outbox: Outbox):
        self.engine = engine
        self.queue: asyncio.Queue = asyncio.Queue()
        self.seqs = []
        n = len(job.samplings[0])
        for p, (ids, samplings) in enumerate(zip(job.prompts, job.samplings)):
            for j, s in enumerate(samplings):
                deliver = functools.partial(lambda i, event: outbox.put(self.queue, (i, event)), p * n + j)
                self.seqs.append(engine.new_sequence(ids, s, deliver))
        self.open = len(self.seqs)

    async def next(self):
        index, event = await self.queue.get()
        if isinstance(event, (Done, Failed)):
            self.open -= 1
        return index, event

    def cancel(self) -> None:
        if self.open:
            self.engine.cancel(self.seqs)


class EngineResponse:
    """An ASGI response fed by a Pending request. A disconnect is watched for the whole time, so
    a client that goes away (streaming or not, waiting or running) frees its slots at once."""

    def __init__(self, pending: Pending, produce, stream: bool):
        self.pending, self.produce, self.stream = pending, produce, stream

    async def __call__(self, scope, receive, send):
        me, gone = asyncio.current_task(), False

        async def watch():
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            me.cancel()  # wherever the response is waiting: for a slot, a token or the socket

        watcher = asyncio.ensure_future(watch())
        started = False
        try:
            async for status, headers, body in self.produce():
                if not started:
                    await send({"type": "http.response.start", "status": status, "headers": headers})
                    started = True
                await send({"type": "http.response.body", "body": body, "more_body": self.stream})
                if not self.stream:
                    return
            if started:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not gone:
                raise
            if hasattr(me, "uncancel"):  # Python 3.11+: this cancellation is handled
                me.uncancel()
        except OSError:  # the socket went away under a send
            pass
        finally:
            watcher.cancel()
            self.pending.cancel()


def create_app(engine: Engine, tokenizer, settings: Settings):
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route

    labels = TokenLabels(tokenizer)
    started = int(time.time())
    outbox = None

    def json_response(obj, status_code: int = 200, headers=None):
        return Response(json_bytes(obj), status_code, headers, media_type="application/json")

    def error(message: str, status: int = 400, type: str = "invalid_request_error", headers=None):
        return json_response(protocol.error_body(message, type), status, headers)

    def authorized(request: Request) -> bool:
        if settings.api_key is None:
            return True
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), settings.api_key.encode())

    def guarded(handler):
        """API key check, and RequestError -> its JSON answer."""
        @functools.wraps(handler)
        async def wrapped(request: Request):
            if not authorized(request):
                return error("missing or wrong API key: send 'Authorization: Bearer KEY'", 401, "authentication_error",
                             {"WWW-Authenticate": "Bearer"})
            try:
                return await handler(request)
            except RequestError as e:
                return error(str(e), e.status, e.type)
        return wrapped

    async def read_json(request: Request) -> dict:
        drain = DRAIN_FACTOR * settings.max_body
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > drain:
            raise RequestError(f"the body is {declared} bytes, over the limit of {settings.max_body}")
        data, size = bytearray(), 0
        async for piece in request.stream():  # read on past the limit, so the client is still listening for the 400
            size += len(piece)
            if size <= settings.max_body:
                data += piece
            elif size > drain:
                break
        if size > settings.max_body:
            raise RequestError(f"the body is over the limit of {settings.max_body} bytes")
        try:
            body = json.loads(bytes(data))
        except (ValueError, UnicodeDecodeError) as e:
            raise RequestError(f"the body is not valid JSON ({e})") from None
        if not isinstance(body, dict):
            raise RequestError("the body must be a JSON object")
        return body

    async def health(request):
        return json_response({"status": "ok", "model": settings.served_name, **engine.load()})

    async def page(request):
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @guarded
    async def models(request):
        return json_response({"object": "list", "data": [model_card()]})

    def model_card() -> dict:
        return {"id": settings.served_name, "object": "model", "created": started,
                "owned_by": "lmlab", "max_model_len": settings.limits.context}

    @guarded
    async def tokenize(request):
        body = await read_json(request)
        protocol._unknown(body, {"prompt", "messages", "add_special_tokens", "model", "add_generation_prompt"})
        if "messages" in body:
            text = chat.render(protocol._messages(body["messages"]))
        else:
            text = protocol._string("prompt", body.get("prompt"))
        ids = tokenizer.encode(text)
        return json_response({"tokens": ids, "count": len(ids), "max_model_len": settings.limits.context})

    @guarded
    async def detokenize(request):
        body = await read_json(request)
        protocol._unknown(body, {"tokens", "model"})
        ids = body.get("tokens")
        if not isinstance(ids, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
            raise RequestError("'tokens' must be an array of token ids (integers)")
        if ids and (min(ids) < 0 or max(ids) >= settings.limits.vocab_size):
            raise RequestError(f"'tokens' holds an id outside [0, {settings.limits.vocab_size - 1}]")
        return json_response({"prompt": tokenizer.decode(ids)})

    @guarded
    async def tokenizer_info(request):
        return json_response({"tokenizer_class": tokenizer.kind, "eos_token": tokenizer.token_text(tokenizer.eot_id),
                             "eos_token_id": tokenizer.eot_id, "model_max_length": settings.limits.context,
                             "chat_template": chat.JINJA})

    def generation_route(is_chat: bool):
        """The handler of /v1/completions or /v1/chat/completions: check, queue, answer."""
        @guarded
        async def handler(request):
            nonlocal outbox
            job = protocol.parse(await read_json(request), is_chat, tokenizer, settings.limits, settings.served_name)
            if job.sequences > engine.max_queue:
                raise RequestError(f"the request asks for {job.sequences} sequences (prompts x n); this server "
                                   f"queues at most {engine.max_queue}")
            if outbox is None or outbox.loop is not asyncio.get_running_loop():
                outbox = Outbox(asyncio.get_running_loop())
            pending = Pending(engine, job, outbox)
            try:
                engine.submit(pending.seqs)
            except ShuttingDown as e:
                return error(str(e), 503, "server_error")
            except QueueFull as e:
                return error(f"the server is busy ({e}); retry later", 429, "rate_limit_error",
                             {"Retry-After": str(settings.retry_after_s)})
            prefix = "chatcmpl" if is_chat else "cmpl"
            produce = lambda: answer(job, pending, prefix, settings.served_name, labels)  # noqa: E731
            return EngineResponse(pending, produce, job.stream)
        return handler

    async def not_found(request, exc):
        if exc.status_code == 405:
            return error(f"{request.method} is not allowed on {request.url.path}", 405)
        return error(f"no route {request.url.path}", exc.status_code, "not_found_error")

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        engine.start()
        try:
            yield
        finally:
            engine.stop()

    routes = [Route("/", page), Route("/health", health), Route("/v1/models", models),
              Route("/v1/completions", generation_route(is_chat=False), methods=["POST"]),
              Route("/v1/chat/completions", generation_route(is_chat=True), methods=["POST"]),
              Route("/tokenize", tokenize, methods=["POST"]), Route("/detokenize", detokenize, methods=["POST"]),
              Route("/tokenizer_info", tokenizer_info)]
    return Starlette(routes=routes, exception_handlers={HTTPException: not_found}, lifespan=lifespan)
