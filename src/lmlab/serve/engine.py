"""The continuous-batching scheduler: one worker thread owns the model and its slots.

Requests (one `Sequence` per choice) wait in a queue; at each step boundary the scheduler
admits waiting sequences into free slots (prefilling each prompt on its own), then runs one
decode step for all occupied slots together, samples each row with that sequence's own
settings and generator, and hands finished or cancelled sequences' slots back. Results go out
through each sequence's `deliver` callback, called on the worker thread.
"""
from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field

import torch

from ..infer.sampling import choose
from ..infer.textstream import TextStream


class QueueFull(Exception):
    """More sequences are waiting than the queue limit allows."""


class ShuttingDown(QueueFull):
    """The server takes no new requests."""


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None   # None: none; k >= 0: each token's log-prob and the top k others
    echo: bool = False            # with logprobs: the prompt's tokens and log-probs too


@dataclass
class Token:
    """One token of a result: its id, the text it adds, its log-prob and the top alternatives."""
    id: int
    text: str
    logprob: float | None = None
    top: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Chunk:
    text: str
    tokens: list[Token]


@dataclass
class Prompt:
    tokens: list[Token]           # the first token has no log-prob (nothing precedes it)


@dataclass
class Done:
    finish_reason: str            # "stop" (a stop string or end-of-text) or "length"
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Failed:
    message: str


class Sequence:
    """One choice of one request, from its prompt ids to its last token."""

    def __init__(self, prompt_ids: list[int], sampling: Sampling, deliver, tokenizer, device):
        self.prompt_ids, self.sampling, self.deliver = list(prompt_ids), sampling, deliver
        self.cancelled = False
        self.generated = 0
        self.last: int | None = None
        self.text = TextStream(tokenizer, sampling.stop)
        self.pending: list[Token] = []   # pushed tokens whose text is not released yet
        self.generator = torch.Generator(device=device)
        if sampling.seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(sampling.seed)


class Engine:
    def __init__(self, model, tokenizer, slots, max_queue: int = 256):
        self.model, self.tokenizer, self.slots = model, tokenizer, slots
        self.device = next(model.parameters()).device
        self.max_queue = max_queue
        self._waiting: collections.deque[Sequence] = collections.deque()
        self._active: dict[int, Sequence] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.generated_tokens = 0     # over the server's life, for /health and the tests
        self.steps = 0
        self.peak_running = 0         # most sequences decoded together so far

    # ---- called from other threads ----
    def new_sequence(self, prompt_ids, sampling: Sampling, deliver) -> Sequence:
        return Sequence(prompt_ids, sampling, deliver, self.tokenizer, self.device)

    def submit(self, seqs: list[Sequence]) -> None:
        with self._cond:
            if self._stopping:
                raise ShuttingDown("the server is shutting down")
            if len(self._waiting) + len(seqs) > self.max_queue:
                raise QueueFull(f"{len(self._waiting)} sequences are waiting (limit {self.max_queue})")
            self._waiting.extend(seqs)
            self._cond.notify()

    def cancel(self, seqs) -> None:
        """Drop sequences whose client went away: waiting ones at once, running ones at the next step."""
        with self._cond:
            for seq in seqs:
                seq.cancelled = True
                if seq in self._waiting:
                    self._waiting.remove(seq)
            self._cond.notify()

    def load(self) -> dict:
        with self._cond:
            return {"running": len(self._active), "waiting": len(self._waiting), "slots": self.slots.n,
                    "generated_tokens": self.generated_tokens, "peak_running": self.peak_running}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lmlab-serve-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker after the current step; sequences still queued or running fail."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()

    # ---- the worker thread ----
    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._cond:
                    while not (self._waiting or self._active or self._stopping):
                        self._cond.wait()
                    if self._stopping:
                        break
                    admit = []
                    free = [s for s in range(self.slots.n) if s not in self._active]
                    while self._waiting and len(admit) < len(free):
                        admit.append(self._waiting.popleft())
                for slot, seq in zip(free, admit):
                    self._guarded([seq], self._start, slot, seq)
                for slot, seq in list(self._active.items()):
                    if seq.cancelled:
                        self._release(slot)
                if self._active:
                    self.peak_running = max(self.peak_running, len(self._active))
                    self._guarded(list(self._active.values()), self._step)
        with self._cond:
            left = list(self._waiting) + list(self._active.values())
            self._waiting.clear()
        for seq in left:
            seq.deliver(Failed("the server stopped"))

    def _guarded(self, seqs, fn, *args) -> None:
        """Run fn; if it raises, fail those sequences (not the server) and free their slots."""
        try:
            fn(*args)
        except Exception as e:  # a bug or an out-of-memory must not take the other requests down
            for slot, seq in list(self._active.items()):
                if seq in seqs:
                    self._release(slot)
            for seq in seqs:
                seq.deliver(Failed(f"{type(e).__name__}: {e}"))

    def _release(self, slot: int) -> None:
        self.slots.free(slot)
        del self._active[slot]

    def _start(self, slot: int, seq: Sequence) -> None:
        if seq.cancelled:
            return
        s = seq.sampling
        logits = self.slots.prefill(slot, seq.prompt_ids)  # [T, V]
        if s.echo and s.logprobs is not None:
            seq.deliver(Prompt(self._prompt_tokens(seq.prompt_ids, logits, s.logprobs)))
        if s.max_tokens == 0:
            self.slots.free(slot)
            seq.deliver(Done("length", len(seq.prompt_ids), 0))
            return
        self._active[slot] = seq
        lp = logits[-1:].float().log_softmax(-1) if s.logprobs is not None else None
        token = self._sample(seq, logits[-1:], None)
        self._accept(slot, seq, token, None if lp is None else lp[0])

    def _step(self) -> None:
        tokens = {slot: seq.last for slot, seq in self._active.items()}
        logits = self.slots.step(tokens)  # [n, V]
        self.steps += 1
        greedy = logits.argmax(-1).tolist()
        need_lp = any(seq.sampling.logprobs is not None for seq in self._active.values())
        lp = logits.float().log_softmax(-1) if need_lp else None
        for slot, seq in list(self._active.items()):
            token = self._sample(seq, logits[slot:slot + 1], greedy[slot])
            self._accept(slot, seq, token, None if lp is None else lp[slot])

    def _sample(self, seq: Sequence, logits: torch.Tensor, greedy: int | None) -> int:
        s = seq.sampling
        if s.temperature <= 0:
            return greedy if greedy is not None else int(logits.argmax(-1))
        return int(choose(logits, s.temperature, s.top_k, s.top_p, seq.generator)[0])

    def _accept(self, slot: int, seq: Sequence, token: int, lp_row) -> None:
        """Record one sampled token: stream what became final, finish the sequence if it is done."""
        seq.generated += 1
        self.generated_tokens += 1
        finish = None
        if token == self.tokenizer.eot_id:
            piece, finish = seq.text.finish(), "stop"
        else:
            seq.pending.append(self._token(token, lp_row, seq.sampling.logprobs))
            piece = seq.text.push(token)
            if seq.text.stopped:
                finish = "stop"
            elif seq.generated >= seq.sampling.max_tokens:
                piece, finish = piece + seq.text.finish(), "length"
        released = self._released(seq, final=finish is not None)
        if piece or released:
            seq.deliver(Chunk(piece, released))
        if finish is None:
            seq.last = token
        else:
            self._release(slot)
            seq.deliver(Done(finish, len(seq.prompt_ids), seq.generated))

    @staticmethod
    def _released(seq: Sequence, final: bool) -> list[Token]:
        """Pending tokens whose text is now all released, with that text (clipped at a stop)."""
        ts, out = seq.text, []
        first = len(ts.ends) - len(seq.pending)
        n_done = 0
        for k, tok in enumerate(seq.pending):
            i = first + k
            start, end = (ts.ends[i - 1] if i else 0), ts.ends[i]
            if not final and end > ts.released:
                break
            n_done += 1
            if ts.stopped and start >= ts.released:
                continue  # all inside the stop string
            tok.text = ts.text[start:end]  # `text` ends at the cut, so this clips a token the stop string began in
            out.append(tok)
        del seq.pending[:n_done]
        return out

    def _token(self, token: int, lp_row, k: int | None) -> Token:
        if lp_row is None or k is None:
            return Token(token, "")
        top = []
        if k > 0:
            values, ids = torch.topk(lp_row, min(k, lp_row.shape[-1]))
            top = list(zip(ids.tolist(), values.tolist()))
        return Token(token, "", float(lp_row[token]), top)

    def _prompt_tokens(self, ids: list[int], logits: torch.Tensor, k: int) -> list[Token]:
        """The prompt's tokens with the log-prob each had given the ones before (scoring)."""
        ts = TextStream(self.tokenizer)
        for i in ids:
            ts.push(i)
        ts.finish()
        lp = logits[:-1].float().log_softmax(-1)
        chosen = lp.gather(-1, torch.tensor(ids[1:], device=lp.device)[:, None])[:, 0].tolist()
        tops = torch.topk(lp, min(k, lp.shape[-1])) if k > 0 and len(ids) > 1 else None
        out = []
        for i, token in enumerate(ids):
            text = ts.text[(ts.ends[i - 1] if i else 0):ts.ends[i]]
            if i == 0:
                out.append(Token(token, text))
                continue
            top = list(zip(tops.indices[i - 1].tolist(), tops.values[i - 1].tolist())) if tops is not None else []
            out.append(Token(token, text, chosen[i - 1], top))
        return out
