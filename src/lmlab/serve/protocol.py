"""The OpenAI wire format: request bodies checked field by field into a `Job`, results shaped
into completion / chat-completion objects and stream chunks. No HTTP and no model here."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from . import chat
from .engine import Sampling, Token

MAX_N = 16          # choices per request
MAX_LOGPROBS = 20   # top alternatives per token (OpenAI's own limit)
MAX_STOP = 8        # stop strings per request
MAX_STOP_CHARS = 256


class RequestError(Exception):
    """A bad request: answered with `status` and {"error": {"message", "type"}}."""

    def __init__(self, message: str, status: int = 400, type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.type = status, type


@dataclass(frozen=True)
class Limits:
    context: int | None     # prompt + max_tokens must fit; None: no limit (LM-Infinite)
    max_tokens: int         # the largest max_tokens a request may ask for
    vocab_size: int


@dataclass
class Job:
    """A checked request: prompts as ids, one Sampling per choice, how to answer."""
    chat: bool
    prompts: list[list[int]]
    samplings: list[list[Sampling]]     # [prompt][choice]
    stream: bool
    include_usage: bool
    echo: bool
    prompt_texts: list[str]

    @property
    def sequences(self) -> int:
        return sum(len(s) for s in self.samplings)


# ---- field checkers: each takes (name, value) and returns the value or raises RequestError ----
def _bad(name: str, what: str, value) -> RequestError:
    return RequestError(f"'{name}' must be {what}, got {_describe(value)}")


def _describe(value) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
             dict: "an object", type(None): "null"}
    return f"{kinds.get(type(value), type(value).__name__)} ({_short(value)})"


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _integer(lo=None, hi=None):
    def check(name, v):
        if isinstance(v, bool) or not isinstance(v, int):
            raise _bad(name, "an integer", v)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise RequestError(f"'{name}' must be in [{lo}, {hi}], got {v}")
        return v
    return check


def _number(lo, hi, open_lo=False):
    def check(name, v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise _bad(name, "a number", v)
        if v > hi or v < lo or (open_lo and v == lo):
            raise RequestError(f"'{name}' must be in {'(' if open_lo else '['}{lo}, {hi}], got {v}")
        return float(v)
    return check


def _boolean(name, v):
    if not isinstance(v, bool):
        raise _bad(name, "a boolean", v)
    return v


def _string(name, v):
    if not isinstance(v, str):
        raise _bad(name, "a string", v)
    return v


def _stop(name, v):
    stops = [v] if isinstance(v, str) else v
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _bad(name, "a string or an array of strings", v)
    if len(stops) > MAX_STOP or any(len(s) > MAX_STOP_CHARS for s in stops):
        raise RequestError(f"'{name}': at most {MAX_STOP} stop strings of at most {MAX_STOP_CHARS} characters")
    return tuple(s for s in stops if s)


def _stream_options(name, v):
    if not isinstance(v, dict):
        raise _bad(name, "an object", v)
    _unknown(v, {"include_usage"}, name + ".")
    return _boolean(name + ".include_usage", v.get("include_usage", False))


def _unknown(body: dict, known, prefix="") -> None:
    extra = sorted(set(body) - set(known))
    if extra:
        raise RequestError(f"unknown field '{prefix}{extra[0]}'; valid fields: {', '.join(sorted(known))}")


SEED = _integer(-(1 << 63), (1 << 63) - 1)
COMMON = {
    "model": _string, "temperature": _number(0.0, 2.0), "top_p": _number(0.0, 1.0, open_lo=True),
    "top_k": _integer(-1, None), "n": _integer(1, MAX_N), "stop": _stop, "seed": SEED, "stream": _boolean,
    "stream_options": _stream_options, "user": _string,
}
COMPLETION = {**COMMON, "prompt": None, "max_tokens": _integer(0, None), "logprobs": _integer(0, MAX_LOGPROBS),
              "echo": _boolean}
CHAT = {**COMMON, "messages": None, "max_tokens": _integer(0, None), "max_completion_tokens": _integer(0, None),
        "logprobs": _boolean, "top_logprobs": _integer(0, MAX_LOGPROBS)}


def _fields(body: dict, spec: dict) -> dict:
    """Checked values of the fields present (null counts as absent)."""
    _unknown(body, spec)
    return {k: (spec[k](k, v) if spec[k] else v) for k, v in body.items() if v is not None}


def _prompts(v, tokenizer, vocab_size: int) -> list[list[int]]:
    """A string, an array of strings, an array of token ids, or an array of such arrays."""
    def ids(x, name):
        if not x:
            raise RequestError(f"'{name}' is empty; give at least one token")
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in x):
            raise _bad(name, "an array of token ids (integers)", x)
        if min(x) < 0 or max(x) >= vocab_size:
            raise RequestError(f"'{name}' holds a token id outside [0, {vocab_size - 1}]")
        return list(x)

    def text(x, name):
        if not x:
            raise RequestError(f"'{name}' is empty; give at least one character")
        return tokenizer.encode(x)

    if isinstance(v, str):
        return [text(v, "prompt")]
    if isinstance(v, list) and v:
        if all(isinstance(x, str) for x in v):
            return [text(x, f"prompt[{i}]") for i, x in enumerate(v)]
        if all(isinstance(x, list) for x in v):
            return [ids(x, f"prompt[{i}]") for i, x in enumerate(v)]
        return [ids(v, "prompt")]
    if isinstance(v, list):
        raise RequestError("'prompt' is empty")
    raise _bad("prompt", "a string, an array of strings or an array of token ids", v)


def _messages(v) -> list[dict]:
    if not isinstance(v, list) or not v:
        raise _bad("messages", "a non-empty array of messages", v)
    out = []
    for i, m in enumerate(v):
        name = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _bad(name, "an object", m)
        _unknown(m, {"role", "content", "name"}, name + ".")
        if m.get("role") not in chat.ROLES:
            raise RequestError(f"'{name}.role' must be one of {', '.join(chat.ROLES)}, got {_short(m.get('role'))}")
        content = m.get("content")
        if isinstance(content, list):  # content parts: only text ones
            parts = []
            for j, p in enumerate(content):
                if not (isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)):
                    raise RequestError(f"'{name}.content[{j}]' must be a text part "
                                       '{"type": "text", "text": ...}')
                parts.append(p["text"])
            content = "".join(parts)
        if not isinstance(content, str):
            raise _bad(name + ".content", "a string or an array of text parts", content)
        out.append({"role": m["role"], "content": content})
    return out


def parse(body: dict, is_chat: bool, tokenizer, limits: Limits, served_name: str) -> Job:
    f = _fields(body, CHAT if is_chat else COMPLETION)
    if "model" in f and f["model"] != served_name:
        raise RequestError(f"model '{f['model']}' is not served here; this server serves '{served_name}'",
                           status=404, type="not_found_error")
    if is_chat:
        if "messages" not in body:
            raise RequestError("'messages' is required")
        text = chat.render(_messages(body["messages"]))
        prompts, texts = [tokenizer.encode(text)], [text]
        logprobs = f.get("top_logprobs", 0) if f.get("logprobs") else None
        if "top_logprobs" in f and not f.get("logprobs"):
            raise RequestError("'top_logprobs' needs 'logprobs': true")
        max_tokens = f.get("max_completion_tokens", f.get("max_tokens"))
        stop = chat_stop(f.get("stop", ()))
        echo = False
    else:
        if "prompt" not in body:
            raise RequestError("'prompt' is required")
        prompts = _prompts(body["prompt"], tokenizer, limits.vocab_size)
        texts = [tokenizer.decode(p) for p in prompts]
        logprobs, max_tokens, stop = f.get("logprobs"), f.get("max_tokens"), f.get("stop", ())
        echo = f.get("echo", False)
    base = Sampling(max_tokens=0, temperature=f.get("temperature", 1.0), top_p=f.get("top_p", 1.0),
                    top_k=max(0, f.get("top_k", 0)), seed=f.get("seed"), stop=stop, logprobs=logprobs, echo=echo)
    n = f.get("n", 1)
    samplings = []
    for ids in prompts:
        m = _max_tokens(max_tokens, len(ids), limits, default=16 if not is_chat else None)
        # choice j of a seeded request uses seed + j: reproducible, yet the choices differ
        samplings.append([replace(base, max_tokens=m, seed=None if base.seed is None else choice_seed(base.seed, j))
                          for j in range(n)])
    if f.get("stream_options") is not None and not f.get("stream"):
        raise RequestError("'stream_options' needs 'stream': true")
    return Job(is_chat, prompts, samplings, f.get("stream", False), f.get("stream_options", False), echo, texts)


def choice_seed(seed: int, j: int) -> int:
    """seed + j, wrapped into the signed 64-bit range torch.Generator takes."""
    return (seed + j + (1 << 63)) % (1 << 64) - (1 << 63)


def chat_stop(stop) -> tuple[str, ...]:
    return tuple(stop) + ((chat.END_OF_TURN,) if chat.END_OF_TURN not in stop else ())


def _max_tokens(asked: int | None, prompt_len: int, limits: Limits, default: int | None) -> int:
    room = limits.max_tokens if limits.context is None else min(limits.max_tokens, limits.context - prompt_len)
    if limits.context is not None and prompt_len > limits.context:
        raise RequestError(f"the prompt is {prompt_len} tokens, longer than the model's context of {limits.context}")
    if asked is None:  # as many as fit (chat), or OpenAI's 16 where they fit (completions)
        return max(0, room if default is None else min(default, room))
    if asked > limits.max_tokens:
        raise RequestError(f"'max_tokens' is {asked}, over this server's limit of {limits.max_tokens}")
    if asked > room:
        raise RequestError(f"the prompt ({prompt_len} tokens) plus max_tokens ({asked}) exceeds the model's "
                           f"context of {limits.context} tokens")
    return asked


# ---- responses ----
def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def error_body(message: str, type: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": type, "param": None, "code": None}}


class TokenLabels:
    """The string a token id shows as in top_logprobs: its text, or for a token that is only part
    of a character (byte fallback) its tokenizer name, e.g. <0xE2>, so labels stay distinct."""

    def __init__(self, tokenizer):
        self.tokenizer, self.memo = tokenizer, {}

    def __call__(self, token: int) -> str:
        if token not in self.memo:
            text = self.tokenizer.decode([token])
            self.memo[token] = text if text and "\ufffd" not in text else self.tokenizer.token_text(token)
        return self.memo[token]


class CompletionLogprobs:
    """The legacy completions `logprobs` object, built up as tokens arrive."""

    def __init__(self, labels: TokenLabels):
        self.labels = labels
        self.offset = 0

    def block(self, tokens: list[Token]) -> dict:
        out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for t in tokens:
            out["tokens"].append(t.text)
            out["token_logprobs"].append(t.logprob)
            if t.logprob is None:
                out["top_logprobs"].append(None)
            else:
                top = {self.labels(i): lp for i, lp in t.top}
                top.setdefault(self.labels(t.id), t.logprob)
                out["top_logprobs"].append(top)
            out["text_offset"].append(self.offset)
            self.offset += len(t.text)
        return out

    @staticmethod
    def join(a: dict, b: dict) -> dict:
        return {k: a[k] + b[k] for k in a}


def chat_logprobs(tokens: list[Token], labels: TokenLabels) -> list[dict]:
    def entry(text, lp):
        return {"token": text, "logprob": lp, "bytes": list(text.encode("utf-8", "surrogatepass"))}
    return [{**entry(t.text, t.logprob), "top_logprobs": [entry(labels(i), lp) for i, lp in t.top]} for t in tokens]
