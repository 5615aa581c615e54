"""Arbitrary facts: a synthetic corpus of invented people's birth cities and years, and what a
model trained on it recalls, hallucinates and how calibrated its answers are.

Kalai & Vempala (2024) show that a calibrated model must hallucinate arbitrary facts at a rate of
at least the monofact rate (the share of facts seen exactly once, a Good-Turing estimate of the
facts never seen) minus its miscalibration. Each fact here is repeated 1, 2, 5 or 20 times in
varied sentence templates, so the monofact rate is set by construction.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

import numpy as np
import torch

from .calibration import ece

SYLLABLES = ["ka", "lo", "ven", "mar", "ti", "sel", "dor", "bri", "nu", "quel", "fa", "ros", "emi", "tan",
             "vul", "osh", "pir", "gan", "zel", "hu", "mei", "dra", "cor", "lis", "bo", "yar", "wen", "ith"]
CITIES = ["Lisbon", "Oslo", "Cairo", "Lima", "Dublin", "Kyoto", "Prague", "Quito", "Accra", "Hanoi",
          "Vienna", "Dakar", "Perth", "Riga", "Turin", "Omaha", "Seville", "Krakow", "Nantes", "Porto"]
# the first is the question's form; the others state the same fact differently
TEMPLATES = ["{name} was born in {city} in {year}.",
             "In {year}, {name} was born in {city}.",
             "Born in {year} in {city}, {name} grew up by the river.",
             "{name}, a native of {city}, was born in {year}.",
             "The records say {name} came into the world in {city} in {year}."]
REPEATS = (1, 2, 5, 20)


@dataclass(frozen=True)
class Fact:
    name: str
    city: str
    year: int
    repeats: int

    def prompt(self) -> str:
        return f"{self.name} was born in"


def invented_name(rng: random.Random) -> str:
    def word(n):
        return "".join(rng.choice(SYLLABLES) for _ in range(n)).capitalize()
    return f"{word(2)} {word(rng.choice((2, 3)))}"


def make_facts(n_per_repeat: int, seed: int = 0, repeats=REPEATS) -> list[Fact]:
    """`n_per_repeat` facts for each repeat count, with distinct invented names."""
    rng = random.Random(seed)
    names: set[str] = set()
    facts = []
    for r in repeats:
        for _ in range(n_per_repeat):
            name = invented_name(rng)
            while name in names:
                name = invented_name(rng)
            names.add(name)
            facts.append(Fact(name, rng.choice(CITIES), rng.randint(1800, 1999), r))
    return facts


def fact_sentences(facts: list[Fact], seed: int = 0) -> list[str]:
    """Every fact stated `repeats` times, each time in a random template, shuffled."""
    rng = random.Random(seed + 1)
    out = [rng.choice(TEMPLATES).format(name=f.name, city=f.city, year=f.year)
           for f in facts for _ in range(f.repeats)]
    rng.shuffle(out)
    return out


def mixed_corpus(facts: list[Fact], real_text: str, seed: int = 0, lines_per_fact: int = 3) -> str:
    """Fact sentences, each followed by a few lines of real text (taken in order, wrapping round)."""
    lines = [ln for ln in real_text.splitlines() if ln.strip()]
    out, k = [], 0
    for sentence in fact_sentences(facts, seed):
        out.append(sentence)
        for _ in range(lines_per_fact):
            out.append(lines[k % len(lines)])
            k += 1
    return "\n".join(out) + "\n"


def monofact_rates(facts: list[Fact]) -> dict:
    """Facts seen once: as a share of distinct facts, and as a share of fact sentences (Good-Turing)."""
    once = sum(f.repeats == 1 for f in facts)
    return {"of_facts": once / len(facts), "good_turing": once / sum(f.repeats for f in facts)}


STOP = re.compile(r" in |[.,\n]")  # where a city ends in every template


@torch.no_grad()
def answer(model, tokenizer, prompt: str, max_new_tokens: int = 24) -> tuple[str, float]:
    """The greedy continuation of `prompt` up to the city's end (" in", ".", ","), and the model's
    probability of that answer (with its leading space) after the prompt."""
    device = next(model.parameters()).device
    ids = tokenizer.encode(prompt)
    text = ""
    for _ in range(max_new_tokens):
        x = torch.tensor([ids[-model.cfg.context:]], device=device)
        nxt = int(model(x)[0][0, -1].argmax())
        ids.append(nxt)
        text = tokenizer.decode(ids[len(tokenizer.encode(prompt)):])
        if STOP.search(text.lstrip()):
            break
    said = STOP.split(text.lstrip(), maxsplit=1)[0].strip()
    return said, answer_probability(model, tokenizer, prompt, " " + said)


@torch.no_grad()
def answer_probability(model, tokenizer, prompt: str, continuation: str) -> float:
    """P(continuation | prompt) under the model, from one forward pass."""
    head = tokenizer.encode(prompt)
    ids = (head + tokenizer.encode(continuation))[-model.cfg.context - 1:]
    n = min(len(ids) - len(head), len(ids) - 1)
    if n <= 0:
        return 1.0
    device = next(model.parameters()).device
    logprobs = torch.log_softmax(model(torch.tensor([ids[:-1]], device=device))[0][0, -n:].float(), -1)
    return float(torch.exp(logprobs.gather(1, torch.tensor(ids[-n:], device=device)[:, None]).sum()))


def evaluate_facts(model, tokenizer, facts: list[Fact], n_bins: int = 10) -> dict:
    """Recall per repeat count, hallucination rate, and ECE of the answers' probabilities."""
    rows = []
    for f in facts:
        said, p = answer(model, tokenizer, f.prompt())
        rows.append({"name": f.name, "city": f.city, "repeats": f.repeats, "answer": said, "p": p,
                     "correct": said == f.city})
    hit = np.array([r["correct"] for r in rows], dtype=float)
    conf = np.array([r["p"] for r in rows])
    cal = ece(conf, hit, n_bins)
    by_repeat = {str(r): float(np.mean([x["correct"] for x in rows if x["repeats"] == r]))
                 for r in sorted({f.repeats for f in facts})}
    mono = monofact_rates(facts)
    halluc = float(1 - hit.mean())  # every query gets an answer: a wrong one is a hallucination
    return {"facts": len(facts), "accuracy_by_repeats": by_repeat, "hallucination_rate": halluc,
            "monofact_rate": mono, "miscalibration_ece": cal["ece"], "mean_answer_p": cal["mean_confidence"],
            "bound": mono["of_facts"] - cal["ece"], "bound_holds": halluc >= mono["of_facts"] - cal["ece"],
            "calibration": cal, "examples": rows[:: max(1, len(rows) // 12)]}
