"""A request's engine events turned into OpenAI answers: one JSON body, or server-sent events."""
from __future__ import annotations

import json
import time
import uuid

from . import protocol
from .engine import Chunk, Done, Failed, Prompt
from .protocol import CompletionLogprobs, TokenLabels


def json_bytes(obj) -> bytes:
    # ASCII with \u escapes: valid for any Python string, lone surrogates (which a prompt can hold) included
    return json.dumps(obj, separators=(",", ":")).encode()


SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no")]
JSON_HEADERS = [(b"content-type", b"application/json")]


def _sse(obj) -> tuple:
    return 200, SSE_HEADERS, b"data: " + (obj if isinstance(obj, bytes) else json_bytes(obj)) + b"\n\n"


class Choice:
    """What one choice has produced so far."""

    def __init__(self, labels: TokenLabels):
        self.text, self.tokens, self.finish, self.completion_tokens = "", [], None, 0
        self.logprobs = CompletionLogprobs(labels)
        self.lp_block = self.logprobs.block([])



async def answer(job: protocol.Job, pending, prefix: str, served_name: str, labels: TokenLabels):
    """Yield (status, headers, body) pieces: SSE chunks when streaming, else one JSON body."""
    kind = ("chat.completion.chunk" if job.stream else "chat.completion") if job.chat else "text_completion"
    head = {"id": f"{prefix}-{uuid.uuid4().hex[:24]}", "object": kind, "created": int(time.time()),
            "model": served_name}
    choices = [Choice(labels) for _ in range(len(pending.seqs))]
    n = len(job.samplings[0])
    want_lp = job.samplings[0][0].logprobs is not None
    extra = {"usage": None} if job.include_usage else {}

    def chunk(index, text=None, tokens=None, finish=None, role=False):
        if job.chat:
            delta = {} if finish else {"content": text}
            if role:
                delta = {"role": "assistant", "content": ""}
            lp = {"content": protocol.chat_logprobs(tokens, labels)} if want_lp and tokens else None
            c = {"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish}
        else:
            lp = choices[index].logprobs.block(tokens) if want_lp and tokens is not None else None
            c = {"index": index, "text": text or "", "logprobs": lp, "finish_reason": finish}
        return _sse({**head, "choices": [c], **extra})

    if job.stream:
        for i in range(len(choices)):
            if job.chat:
                yield chunk(i, role=True)
            elif job.echo and not want_lp:
                yield chunk(i, job.prompt_texts[i // n])
    failed = None
    while pending.open:
        i, ev = await pending.next()
        ch = choices[i]
        if isinstance(ev, Prompt):  # echo with logprobs: the prompt's own tokens come first
            ev_text = "".join(t.text for t in ev.tokens)
            if job.stream:
                yield chunk(i, ev_text, ev.tokens)
            else:
                ch.text += ev_text
                ch.lp_block = CompletionLogprobs.join(ch.lp_block, ch.logprobs.block(ev.tokens))
        elif isinstance(ev, Chunk):
            if job.stream:
                yield chunk(i, ev.text, ev.tokens)
            else:
                ch.text += ev.text
                ch.tokens += ev.tokens
                if want_lp and not job.chat:
                    ch.lp_block = CompletionLogprobs.join(ch.lp_block, ch.logprobs.block(ev.tokens))
        elif isinstance(ev, Done):
            ch.finish, ch.completion_tokens = ev.finish_reason, ev.completion_tokens
            if job.stream:
                yield chunk(i, "", None, finish=ev.finish_reason)
        elif isinstance(ev, Failed):
            failed = ev.message
            pending.cancel()
            break
    prompt_tokens = sum(len(p) for p in job.prompts)
    total = protocol.usage(prompt_tokens, sum(c.completion_tokens for c in choices))
    if failed is not None:
        body = protocol.error_body(f"generation failed: {failed}", "server_error")
        yield _sse(body) if job.stream else (500, JSON_HEADERS, json_bytes(body))
        if job.stream:
            yield _sse(b"[DONE]")
        return
    if job.stream:
        if job.include_usage:
            yield _sse({**head, "choices": [], "usage": total})
        yield _sse(b"[DONE]")
        return
    out = []
    for i, c in enumerate(choices):
        text = (job.prompt_texts[i // n] if job.echo and not want_lp else "") + c.text
        if job.chat:
            lp = {"content": protocol.chat_logprobs(c.tokens, labels)} if want_lp else None
            out.append({"index": i, "message": {"role": "assistant", "content": text}, "logprobs": lp,
                        "finish_reason": c.finish})
        else:
            out.append({"index": i, "text": text, "logprobs": c.lp_block if want_lp else None,
                        "finish_reason": c.finish})
    yield 200, JSON_HEADERS, json_bytes({**head, "choices": out, "usage": total})
