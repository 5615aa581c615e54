"""The serving engine without HTTP: incremental detokenising (TextStream) against the algorithm
`lmlab generate` used before it, the engine's streaming rules on scripted tokens, and the per-row
cache positions of continuous batching against one-sequence decoding."""
import time

import pytest
import torch
from hypothesis import given, settings, strategies as st

from lmlab import config
from lmlab.infer.textstream import TextStream, stop_prefix_len
from lmlab.model import Transformer
from lmlab.serve.engine import Chunk, Done, Engine, Sampling
from lmlab.serve.slots import SeparateSlots, SharedSlots, shares_forward
from lmlab.tokenizers.char import CharTokenizer

TOK = CharTokenizer(list("ab \nx"))
PIECES = {"a": [TOK.encode("a")], "é": [[0xC3], [0xA9]], "🦄": [[0xF0], [0x9F], [0xA6], [0x84]]}


def reference(tokens, stop):
    """What generate() streamed before TextStream: the whole text decoded at every token."""
    new, emitted, pieces = [], "", []
    for token in tokens:
        new.append(token)
        text = TOK.decode(new)
        hit = min((text.find(s) for s in stop if s and s in text), default=-1)
        if hit >= 0:
            text = text[:hit]
        ready = text if hit >= 0 else text.rstrip("\ufffd")
        if hit < 0:
            ready = ready[: len(ready) - stop_prefix_len(ready, stop)]
        if len(ready) > len(emitted):
            pieces.append(ready[len(emitted):])
        emitted = ready
        if hit >= 0:
            return text, pieces
    text = TOK.decode(new)
    if len(text) > len(emitted):
        pieces.append(text[len(emitted):])
    return text, pieces


def streamed(tokens, stop):
    ts, pieces = TextStream(TOK, stop), []
    for token in tokens:
        if piece := ts.push(token):
            pieces.append(piece)
        if ts.stopped:
            return ts.text, pieces
    if piece := ts.finish():
        pieces.append(piece)
    return ts.text, pieces


chars = st.sampled_from(["a", "b", " ", "\n", "x", "é", "🦄", "broken"])


@settings(max_examples=300, deadline=None)
@given(st.lists(chars, max_size=30), st.lists(st.text("ab \né🦄", min_size=1, max_size=4), max_size=3))
def test_textstream_streams_what_generate_streamed(seq, stop):
    tokens = []
    for c in seq:
        tokens += [0xE2] if c == "broken" else TOK.encode(c)  # a lone lead byte: never a whole character
    assert streamed(tokens, stop) == reference(tokens, stop)
    text, pieces = streamed(tokens, stop)
    assert "".join(pieces) == text


class Scripted:
    """Slots whose model answers with a fixed token sequence per prompt (logits one-hot)."""

    def __init__(self, scripts: dict, n: int, vocab: int):
        self.scripts, self.n, self.vocab, self.at = scripts, n, vocab, {}

    def _logits(self, slot):
        row = torch.zeros(self.vocab)
        row[self.at[slot][0][self.at[slot][1]]] = 1.0
        self.at[slot][1] += 1
        return row

    def prefill(self, slot, ids):
        self.at[slot] = [self.scripts[tuple(ids)], 0]
        return torch.stack([torch.zeros(self.vocab)] * (len(ids) - 1) + [self._logits(slot)])

    def step(self, tokens):
        return torch.stack([self._logits(s) if s in tokens else torch.zeros(self.vocab) for s in range(self.n)])

    def free(self, slot):
        self.at.pop(slot, None)


def run_scripted(scripts: dict, samplings: dict):
    """Run each prompt (a tuple of ids) with its Sampling through one engine; events per prompt."""
    engine = Engine(torch.nn.Linear(1, 1), TOK, Scripted(scripts, 4, TOK.vocab_size))
    events = {p: [] for p in scripts}
    seqs = [engine.new_sequence(list(p), samplings[p], events[p].append) for p in scripts]
    engine.start()
    engine.submit(seqs)
    deadline = time.monotonic() + 20
    while not all(e and isinstance(e[-1], Done) for e in events.values()):
        assert time.monotonic() < deadline
        time.sleep(0.005)
    engine.stop()
    return events


def test_engine_streams_whole_characters_and_never_a_stop_string():
    text = "ab é🦄 xa\nb🦄x"
    script = TOK.encode(text) + [TOK.eot_id]
    p1, p2, p3 = (257,), (258,), (259,)
    events = run_scripted({p1: script, p2: script, p3: script},
                          {p1: Sampling(max_tokens=100, temperature=0, logprobs=0),
                           p2: Sampling(max_tokens=100, temperature=0, stop=("\nb🦄",), logprobs=0),
                           p3: Sampling(max_tokens=9, temperature=0, logprobs=0)})
    for prompt, want, finish, n_generated in [(p1, text, "stop", len(script)), (p2, "ab é🦄 xa", "stop", 18),
                                              (p3, TOK.decode(script[:9]), "length", 9)]:
        chunks = [e for e in events[prompt] if isinstance(e, Chunk)]
        assert "".join(c.text for c in chunks) == want
        assert all("\ufffd" not in c.text for c in chunks[:-1])  # a split character is held back, not shown as U+FFFD
        assert all("".join(t.text for t in c.tokens) == c.text for c in chunks)
        done = events[prompt][-1]
        assert (done.finish_reason, done.completion_tokens, done.prompt_tokens) == (finish, n_generated, 1)
    # the stop string's first character was held back, never streamed and cut
    assert not any("\n" in c.text for c in events[p2] if isinstance(c, Chunk))


def model_for(**overrides):
    cfg = config.load("tiny").model
    cfg.vocab_size = 40
    for k, v in overrides.items():
        setattr(cfg, k, v)
    torch.manual_seed(0)
    return Transformer(cfg).eval()


@pytest.mark.parametrize("overrides", [{}, {"n_kv_heads": 2}, {"positions": "learned"}])
@torch.inference_mode()
def test_rows_of_different_lengths_decode_as_each_alone(overrides):
    model = model_for(**overrides)
    prompts = [[1, 2, 3, 4, 5, 6, 7], [9], [4, 4, 8]]
    slots = SharedSlots(model, 4, 64, torch.device("cpu"))
    first = {s: slots.prefill(s, p)[-1] for s, p in zip((3, 0, 1), prompts)}
    feeds = [[5, 6, 7], [1, 2, 3], [30, 31, 32]]
    batched = [slots.step({3: a, 0: b, 1: c}) for a, b, c in zip(*feeds)]
    for slot, ids, feed in zip((3, 0, 1), prompts, feeds):
        cache = model.new_cache(64)  # the one-sequence path lmlab generate takes
        logits, _ = model(torch.tensor([ids]), cache=cache)
        assert torch.equal(first[slot], logits[0, -1])  # prefill is that very path
        for step, token in enumerate(feed):
            logits, _ = model(torch.tensor([[token]]), cache=cache)
            torch.testing.assert_close(batched[step][slot], logits[0, -1], rtol=1e-5, atol=1e-5)
        alone = SharedSlots(model, 4, 64, torch.device("cpu"))
        other = (slot + 2) % 4
        alone.prefill(other, ids)
        for step, token in enumerate(feed):  # alone, in another slot: bit for bit the batched numbers
            assert torch.equal(alone.step({other: token})[other], batched[step][slot])


@torch.inference_mode()
def test_models_the_shared_cache_cannot_hold_decode_one_slot_at_a_time():
    from lmlab.infer.generate import sample_ids

    model = model_for(pattern="AF MF")
    assert not shares_forward(model) and shares_forward(model_for())
    slots = SeparateSlots(model, 2, lambda: model.new_cache(64))
    engine = Engine(model, TOK, slots)
    got = []
    seq = engine.new_sequence([1, 2, 3], Sampling(max_tokens=12, temperature=0), got.append)
    engine._start(0, seq)  # the worker's own calls, run here in order
    while 0 in engine._active:
        engine._step()
    ids = list(sample_ids(model, [1, 2, 3], 12, temperature=0))
    assert got[-1].completion_tokens == 12 and seq.text.ids == ids  # (end-of-text, id 256, is outside this vocab)
