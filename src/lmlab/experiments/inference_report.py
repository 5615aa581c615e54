"""Write docs/inference.md and its PNGs from the JSON that `lmlab experiment inference` measured."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import common

USAGE = """\
# Inference-time methods

None of these needs retraining: each is an option of `lmlab generate` / `lmlab eval` and a
function of the Python API. Facts from the papers are in `shared/PAPERS.md` sections 3, 4 and 8.

| method | CLI | Python |
|---|---|---|
| LM-Infinite (Lambda mask, RoPE distance cap, middle-evicting KV cache) | `lmlab generate RUN --lm-infinite [--n-global 10 --n-local 0]`; `lmlab eval RUN --long`; `lmlab eval RUN --task passkey` | `lmlab.infer.lminfinite.lm_infinite(model, n_global, n_local)`, `.sample_ids`, `lmlab.eval.long.evaluate_long`, `lmlab.eval.passkey.evaluate` |
| kNN-LM | `lmlab knn build RUN --data CORPUS -o STORE [--split train --index auto]`; `lmlab eval RUN --knn STORE --lmbda 0.25 --k 1024 --knn-temperature T`; `lmlab generate RUN --knn STORE --lmbda L --k K --knn-temperature T` | `lmlab.infer.knnlm.build / Datastore.load / evaluate / generate_ids` |
| layer voids (L2 adaptive computation) | `lmlab eval RUN --voids 0.8 --void-mode last`; `lmlab generate RUN --voids 0.8 [--void-mode detect/last/skip]` (rates on stderr) | `with lmlab.infer.voids.LayerVoids(model, alpha, mode) as lv: ...; lv.rates()` |
| greedy / beam search | `lmlab generate RUN --temperature 0`; `--beam N [--length-penalty A]` | `lmlab.infer.beam.beam_search(model, ids, n, beam)` |
| conditional beam search | `lmlab generate RUN --beam 4 --degeneracy CLASSIFIER.json [--attribute-weight 1]` | `lmlab.infer.degeneracy.train_on_samples`, `attribute_fn`, `beam_search(..., attribute=)` |
| in-context navigation | `lmlab generate RUN --icn N` | `lmlab.infer.icn.navigate(model, tokenizer, prompt, n)` |
| hidden-state optimisation | `lmlab generate RUN --hso STEPS --hso-lr LR`; `lmlab eval RUN --hso STEPS --hso-lr LR [--hso-chunk N]` | `lmlab.infer.hso.prefill(Setting(steps, lr))` for `generate(..., prefill=)`, `.continue_logits`, `.evaluate`, `.choice_loglikelihoods` |

Only one of these per `generate`/`eval` call, and they run in float32. Speed is measured by
`python benchmarks/decode_speed.py [RUN] [--batches 1,16]` (JSON, LM-Infinite vs vanilla in the same run).
Plain sampling has its own speed options, `--dtype bfloat16|int8|w8a8` and `--compile`
(`lmlab eval --dtype` scores a model the same way); they are measured in
[performance.md](performance.md#generation).

## How each works here
- **LM-Infinite** wraps the attention modules from outside (`enable`/`disable`, no model edit):
  each query sees the first `n_global` tokens and the last `n_local` (default: the training
  context); a global key farther than `n_local` is scored at distance exactly `n_local` (query
  rotated by the cap, key unrotated). The cache keeps the globals plus a ring buffer of `n_local`
  keys. While all keys are within `n_local` it runs the vanilla code path: identical logits (tested).
  Decoding one token past `n_local` rotates the globals to position `p - n_local` in place and
  attends to [globals | ring] in one fused call, the new key rotated straight into its ring slot
  (same logits as the general masked path, tested).
- **kNN-LM**: key = input of the last block's FFN after its norm (`blocks.{L-1}.ffn.in`), value =
  next token; one entry per target token; keys float16 on disk; faiss Flat (exact) up to 500k
  entries, IVF-PQ (nlist = sqrt(n), d/4 sub-quantizers of 8 bits, nprobe 32) beyond; distances recomputed exactly
  from the stored keys; `p = lambda p_kNN + (1 - lambda) p_LM` in log space (lambda = 0 is exactly
  the LM, tested). A store is written under a temporary name and renamed: an interrupted build
  leaves nothing behind (tested).
- **Layer voids**: per token, `D_l = ||h_l|| - ||h_(l-1)||`; layer `l >= 2` is void if
  `D_l < alpha (max_(k<l) D_k - min_(k<l) D_k)` (layer 1 has nothing to compare with: active).
  `last` answers from the last non-void layer, `skip` drops void layers' updates. Every layer is
  still computed (detection needs its output), so this saves no time.
- **Conditional beam search** ranks beams by `log p(y<=t | x) + w log P(not degenerate | y<=t)`; the
  classifier is a logistic regression on cheap text features of the prefix (repeated n-gram
  rates, repeated suffix length, letters), trained on the model's own samples at temperatures
  0-1.2, each labelled degenerate (empty, or > 30% repeated word trigrams) by its whole text.
- **In-context navigation**: answer i is decoded greedily after the most likely first token that
  no earlier answer started with, with the earlier answers placed in the context.
- **Hidden-state optimisation** (`lmlab.infer.hso`): gradient steps on the KV cache of the seen
  text, never on the weights (they are unchanged after a call and get no `.grad`, tested). For seen
  tokens x_0 .. x_{P-1}:
  - *Optimised tensors*: every attention layer's K (after RoPE, as the cache stores it) and V at
    positions 0 .. P-2, each position and layer a free tensor (changing one recomputes no other).
  - *Loss*: the mean negative log-likelihood of x_1 .. x_{P-1}, each predicted at the position
    before it by a forward pass whose attention takes its keys and values from those tensors
    (queries and the residual stream recomputed; substituted through the k/v hook points, the
    model code untouched). Per-row means, summed over a batch: rows do not interact.
  - *The part of the cache the loss cannot see* is the last seen position, not the last layer: its
    K and V are read only by queries at or after it, i.e. by the prediction of the unseen next
    token, so they get no gradient; they are not optimised, and the last seen token is run afresh
    through the optimised cache to predict. Every layer, the last included, reaches the loss
    through its own attention (tested: every layer's K and V get a gradient). Had the variables been
    the blocks' outputs instead, the top one would feed only its own position's logits.
  - *Update*: plain gradient descent, K -= lr dL/dK, `--hso STEPS` times (RoPE is a rotation, so
    the steps are the same before or after it). 0 steps is the plain model (bit-identical logits
    and samples, tested).
  - *generate*: HSO on the prompt, and again on the half-context window each time the full cache is
    re-encoded; the generated tokens' K and V come from the model, over the optimised past.
  - *eval, chunk by chunk*: the text is cut into chunks of `--hso-chunk` tokens (default a quarter
    of the context); a chunk is predicted from the window of up to `context` tokens ending with it,
    after HSO on that window's tokens before the chunk, starting afresh for every chunk. The
    output adds `without_hso` (the same chunking, 0 steps). Cost per chunk: STEPS forward and
    backward passes over the seen tokens; measured in [experiments/hso.md](experiments/hso.md).
  - Attention-only models (patterns of A and F, no meta-tokens): other mixers cache a recurrent state.
"""


def _table(header: list[str], rows: list[list]) -> str:
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else "-" if v is None else str(v)  # None: NaN in the JSON
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _fig(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return common.pyplot()


def _model_of(r: dict) -> str:
    """The model and command a part was measured with: parts of one page may come from different runs."""
    mo = r.get("model")
    if not mo:
        return "The tinyshakespeare model"
    made = f"; measured by `{r['command']}`" if "command" in r else ""
    return (f"The tinyshakespeare model ({mo['layers']} layers, d_model {mo['d_model']}, {mo['steps']} steps of "
            f"{mo['batch']} x {mo['context']} tokens{made})")


def _lminfinite(r: dict, figs: Path) -> str:
    long = r["long"]
    ctx = long["context"]
    wall = f" ({r['wall_s'] / 60:.1f} min in that run, training both models included)" if "wall_s" in r else ""
    mo = r.get("model", {})
    trained = (f", {mo['layers']} layers, d_model {mo['d_model']}, {r['machine']['params']:,} parameters, "
               f"{mo['steps']} steps of {mo['batch']} x {ctx} tokens") if mo else ""
    md = ["## LM-Infinite\n",
          f"Measured by `{r.get('command', COMMAND + ' --parts lminfinite')}`{wall}.\n",
          f"Model: char-level{trained}, trained on tinyshakespeare with context {ctx}; held-out text (validation split), "
          f"{long['n_windows']} windows per length starting at the same places; n_global = {long['n_global']}, "
          f"n_local = {long['n_local']}. Bits per byte over the whole window and over its last {ctx} tokens:\n"]
    by = {(x["method"], x["multiplier"]): x for x in long["rows"]}
    mults = sorted({x["multiplier"] for x in long["rows"]})
    md.append(_table(["window", "vanilla bpb", "LM-Infinite bpb", f"vanilla bpb (last {ctx})",
                      f"LM-Infinite bpb (last {ctx})"],
                     [[f"{m}x ({m * ctx})", by["vanilla", m]["bpb"], by["lminfinite", m]["bpb"],
                       by["vanilla", m]["bpb_last_context"], by["lminfinite", m]["bpb_last_context"]] for m in mults]))
    plt = _fig(figs / "lminfinite_profile.png")
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for method, label in (("vanilla", "vanilla"), ("lminfinite", "LM-Infinite")):
        prof = long["profile"][method]
        ax.plot([(p["start"] + p["end"]) / 2 for p in prof], [p["bpb"] for p in prof], marker="o", label=label)
    ax.axvline(ctx, color="grey", ls="--", lw=1)
    ax.text(ctx, ax.get_ylim()[1], " training length", va="top", fontsize=8, color="grey")
    ax.set_xlabel("position in the window (tokens)")
    ax.set_ylabel("bits per byte")
    ax.set_title(f"Loss by position, {max(mults)}x-context windows")
    ax.legend()
    fig.tight_layout()
    fig.savefig(figs / "lminfinite_profile.png", dpi=90)
    plt.close(fig)
    md.append("\n![bpb vs position](inference/lminfinite_profile.png)\n")
    md.append(_speed(r["speed"], long["n_local"], r.get("machine", {}).get("cpus")))
    if r.get("passkey"):
        md.append(_passkey(r["passkey"], r.get("passkey_model", {}), long["n_global"]))
    return "\n".join(md)


def _speed(speed: list[dict], n_local: int, cpus: int | None) -> str:
    if "model" not in speed[0]:  # results.json from before the batch/model columns
        return ""
    r0 = speed[0]
    md = [f"\nDecoding speed: greedy, {r0['n_new']} new tokens after a prompt of the given length (tok/s counts the "
          f"tokens of all sequences in the batch); each method's cache is prefilled once per cell (not timed) and "
          f"copied for each of {r0['runs']} interleaved runs; the fastest run of each method (other jobs on the "
          "shared CPU only ever add time; the medians are in the results JSON). Vanilla is the usual preallocated KV cache, "
          "all positions attended in one fused call; both use RoPE tables built once past the context "
          f"(the model grows and keeps them). n_global = 10, n_local = {n_local}. 1-minute load "
          f"average during the cells: {min(x['load_avg_1min'] for x in speed):.1f}-"
          f"{max(x['load_avg_1min'] for x in speed):.1f} on {cpus or '?'} cores.\n"]
    mults = sorted({x["multiplier"] for x in speed})
    by = {(x["model"], x["batch"], x["multiplier"]): x for x in speed}
    rows = []
    for (model, batch) in dict.fromkeys((x["model"], x["batch"]) for x in speed):
        x = by[model, batch, mults[0]]
        name = f"{'trained' if model == 'trained' else 'random init'} {x['layers']}x{x['d_model']} ({x['params'] / 1e6:.1f}M), batch {batch}"
        rows.append([name] + [f"{by[model, batch, m]['vanilla']:.0f} / {by[model, batch, m]['lminfinite']:.0f} "
                              f"(**{by[model, batch, m]['speedup']:.2f}x**)" if (model, batch, m) in by else "-"
                              for m in mults])
    md.append("Vanilla tok/s / LM-Infinite tok/s (speed-up) by prompt length:\n")
    md.append(_table(["model, batch"] + [f"{m}x ({m * n_local})" for m in mults], rows))
    spread = max(max(x["lminfinite"] for x in speed if (x["model"], x["batch"]) == key)
                 / min(x["lminfinite"] for x in speed if (x["model"], x["batch"]) == key)
                 for key in {(x["model"], x["batch"]) for x in speed})
    md.append("\nAt batch 1 the fp32 weights (4 bytes x parameters) are read once per token and dominate: the "
              "speed-up is bounded by (weights + vanilla KV cache) / (weights + bounded cache). LM-Infinite's cache "
              "has the same size at every prompt length, so its time per token should not depend on it; the spread "
              f"within a row (up to {spread:.2f}x between its fastest and slowest cell) comes from the other jobs on "
              "the shared CPU. Vanilla's time per token grows with the prompt (its cache grows), the more so at batch 16 (16 "
              "caches). Same table for any model: `python benchmarks/decode_speed.py [RUN] --batches 1,16`.\n")
    return "\n".join(md)


def _passkey(pk: list[dict], pm: dict, n_global: int) -> str:
    lengths = sorted({x["length"] for x in pk})
    depths = sorted({x["depth"] for x in pk})
    ctx = pm.get("context", lengths[1])
    cell = {(x["method"], x["length"], x["depth"]): x for x in pk}
    n = pk[0].get("n", 10)
    md = [f"\nPasskey retrieval. Model: char-level, {pm.get('layers')} layers, d_model {pm.get('d_model')}, context "
          f"{ctx}, {pm.get('params', 0):,} parameters, {pm.get('steps')} steps of {pm.get('batch')} x {ctx} tokens "
          f"(final validation loss {pm.get('val_loss', float('nan')):.3f} nats/char) on synthetic passkey documents "
          f"(`{pm.get('corpus', '?')}`: at most ~200 characters, the question asked 3 times; at that length the "
          "filler is shorter than one line, so in training the key sentence always follows the intro). Prompts from "
          "`lmlab.eval.passkey.make_prompt` (the LM-Infinite / Landmark format: repeated filler lines, the key "
          "sentence at the line boundary at relative depth d, the question at the end); greedy decoding; exact-match "
          f"accuracy / digit accuracy (chance 0.1) over {n} random 5-digit keys per cell. Depth 1.0 puts the key "
          f"sentence right before the question, within n_local = {ctx} of the answer at every length; at the other "
          f"depths beyond {ctx} tokens it sits in the masked middle. n_global = {n_global}.\n"]
    rows = []
    for method in ("vanilla", "lminfinite"):
        for d in depths:
            rows.append([method, d] + [f"{cell[method, L, d]['accuracy']:.2f} / {cell[method, L, d]['digit_accuracy']:.2f}"
                                       for L in lengths])
    md.append(_table(["method", "depth"] + [f"{L} tokens ({L / ctx:g}x)" for L in lengths], rows))

    def mean(method, ls, ds, key="accuracy"):
        return np.mean([cell[method, L, d][key] for L in ls for d in ds])

    inside = [L for L in lengths if L <= ctx]
    beyond = [L for L in lengths if L > ctx]
    near = [d for d in depths if d >= 1.0]
    far = [d for d in depths if d < 1.0]
    shortest = np.mean([cell["vanilla", lengths[0], d]["tokens"] for d in depths])
    md.append(f"\nAt the training length ({', '.join(map(str, inside))} tokens; the prompts there are {shortest:.0f} "
              "tokens on average, as the fixed text alone is longer, so the two methods can differ slightly) the model retrieves "
              f"{mean('vanilla', inside, depths):.2f} of the keys exactly ({mean('vanilla', inside, depths, 'digit_accuracy'):.2f} "
              f"of the digits). Beyond it ({', '.join(map(str, beyond))} tokens), exact-match accuracy:\n")
    md.append(_table(["method", "key within n_local of the question (depth 1.0)", "key farther (depths < 1)"],
                     [[m, f"{mean(m, beyond, near):.2f} / {mean(m, beyond, near, 'digit_accuracy'):.2f}" if near else "-",
                       f"{mean(m, beyond, far):.2f} / {mean(m, beyond, far, 'digit_accuracy'):.2f}"]
                      for m in ("vanilla", "lminfinite")]))
    return "\n".join(md)


def _knn_note(docs: Path, better: float) -> str:
    """What the `better` share measures, drawn from the kNN-LM experiment's committed results beside this page."""
    from .knnlm import results_path
    from .knnlm_report import inference_note

    path = results_path(docs / "experiments" / "knnlm.md")
    return inference_note(common.read_json(path), better) if path.is_file() else ""


def _knn(r: dict, figs: Path) -> str:
    md = ["## kNN-LM\n",
          f"{_model_of(r)}. Datastores from the *training* split of each corpus, evaluated on the "
          "held-out split; k = 1024. Perplexity is per character token. `better`/`worse` = fraction of "
          "tokens whose log-probability rose/fell with kNN (the critique's first measurement; the critique as a "
          "whole, generation quality included, is measured in [experiments/knnlm.md](experiments/knnlm.md)).\n"]
    rows = []
    for name, v in r.items():
        if not isinstance(v, dict) or "grid" not in v:
            continue
        g = {(x["temperature"], x["lmbda"]): x for x in v["grid"]}
        best = min(v["grid"], key=lambda x: x["knn"]["loss"])
        for key, label in (((1.0, 0.25), "paper default"), ((best["temperature"], best["lmbda"]), "best on this text")):
            x = g[key]
            rows.append([name, f"{v['entries']:,} ({v['index']})", label, key[0], key[1], x["base"]["ppl"],
                         x["knn"]["ppl"], x["base"]["bpb"], x["knn"]["bpb"], x["frac_better"], x["frac_worse"]])
    md.append(_table(["datastore", "entries (index)", "setting", "T", "lambda", "ppl LM", "ppl kNN-LM",
                      "bpb LM", "bpb kNN-LM", "better", "worse"], rows))
    md.append("\nThe best setting was picked on the same held-out text it is reported on (a 12-point grid "
              "T in {1, 3, 10, 30} x lambda in {0.1, 0.25, 0.5}), so it is optimistic; the paper default is not tuned.\n")
    md.append(_knn_note(figs.parent, rows[0][-2]))  # the first store's paper-default `better`
    timing = [[n, f"{v['build_s']:.0f}", f"{v['search_s']:.0f}", v["eval_tokens"]] for n, v in r.items()
              if isinstance(v, dict) and "grid" in v]
    md.append(_table(["datastore", "build s (0 = reused)", "search s", "eval tokens"], timing))
    name = next(n for n, v in r.items() if isinstance(v, dict) and "grid" in v)
    best = min(r[name]["grid"], key=lambda x: x["knn"]["loss"])
    plt = _fig(figs / "knn_token_changes.png")
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    edges = np.array(best["hist_edges"])
    ax.bar((edges[:-1] + edges[1:]) / 2, best["hist_counts"], width=np.diff(edges), color="tab:blue")
    ax.axvline(0, color="black", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("log p(kNN-LM) - log p(LM) per token (nats)")
    ax.set_ylabel("tokens")
    ax.set_title(f"{name}: T={best['temperature']}, lambda={best['lmbda']}")
    fig.tight_layout()
    fig.savefig(figs / "knn_token_changes.png", dpi=90)
    plt.close(fig)
    md.append("\nPer-token change (second measurement), best in-domain setting:\n\n"
              "![per-token change histogram](inference/knn_token_changes.png)\n")
    ent = r.get("entropy")
    if ent:
        h_lm, h_knn = np.array(ent["h_lm"]), np.array(ent["h_knn"])
        plt = _fig(figs / "knn_entropy.png")
        fig, ax = plt.subplots(figsize=(6.4, 3.4))
        w = 16
        smooth = lambda a: np.convolve(a, np.ones(w) / w, mode="valid")
        xs = np.arange(len(smooth(h_lm))) + w / 2
        ax.plot(xs, smooth(h_lm), label="p_LM")
        ax.plot(xs, smooth(h_knn), label="p_kNN (retrieval)")
        ax.set_xlabel("position in generated text (tokens)")
        ax.set_ylabel("entropy (nats)")
        ax.set_title("Entropy while sampling from the kNN-LM")
        ax.legend()
        fig.tight_layout()
        fig.savefig(figs / "knn_entropy.png", dpi=90)
        plt.close(fig)
        q = len(h_lm) // 4
        md.append(f"\nThird measurement: entropy of the retrieval distribution and of the LM while sampling "
                  f"(T = 1) from the kNN-LM (lambda {ent['lmbda']}, kNN temperature {ent['temperature']}), "
                  f"mean of {ent.get('samples', 6)} samples of {len(h_lm)} tokens after 32-token held-out prompts "
                  f"(the model's context is 128: later tokens slide the window):\n\n")
        md.append(_table(["tokens", "H(p_LM)", "H(p_kNN)"],
                         [[f"{i * q}-{(i + 1) * q}", float(h_lm[i * q:(i + 1) * q].mean()),
                           float(h_knn[i * q:(i + 1) * q].mean())] for i in range(4)]))
        md.append("\n![entropy vs position](inference/knn_entropy.png)\n")
    return "\n".join(md)


def _voids(r: dict, figs: Path) -> str:
    p, L = r["plain"], len(r["rates"]["prompt"])
    md = ["## Layer voids\n",
          f"{_model_of(r)}, {r['eval_tokens']:,} held-out tokens for bits per byte, and "
          f"{r['items']} four-way multiple-choice items cut from the held-out text (`lmlab.eval.choice`: a 64-character "
          "passage, the true 32-character continuation among three from elsewhere; chance 0.25, one accuracy's "
          f"standard error about {_se(p['mc_acc'], r['items']):.3f}). `detect` leaves the output alone; `last` answers "
          "from the last non-void layer; `skip` drops void layers' updates. *skipped* = share of (token, layer) "
          "updates found void, i.e. what a skip would save if the void test did not need the layer's output; "
          "*eval s* = wall time of the bits-per-byte pass (same run, shared CPU). The last rows are the honest "
          "compute-saving baseline: the same model with only its first k blocks (then its final norm and head).\n"]
    rows = [["plain model", "-", "-", p["bpb"], p["mc_acc"], p["mc_acc_norm"], "0.00", f"{p['eval_s']:.1f}", "-"]]
    for q in r["quality"]:
        rows.append([q["mode"], q["alpha"], ", ".join(f"{a:.2f}" for a in q["active_rate"]), q["bpb"], q["mc_acc"],
                     q["mc_acc_norm"], f"{q['void_share']:.2f}", f"{q['eval_s']:.1f}",
                     f"{q['eval_s'] / p['eval_s']:.2f}x"])
    for f in r["first_layers"]:
        rows.append([f"first {f['layers']} of {L} layers", "-", "-", f["bpb"], f["mc_acc"], f["mc_acc_norm"],
                     f"{1 - f['layers'] / L:.2f}", f"{f['eval_s']:.1f}", f"{f['eval_s'] / p['eval_s']:.2f}x"])
    md.append(_table(["mode", "alpha", "active rate per layer", "bpb", "MC acc", "MC acc_norm", "skipped",
                      "eval s", "vs plain"], rows))
    paper = next((q for q in r["quality"] if q["alpha"] == 0.8 and q["mode"] == "last"), None)
    same_depth = _closest_depth(r["first_layers"], paper["void_share"], L) if paper else None
    if paper and same_depth and paper["bpb"] > p["bpb"]:
        md.append(f"\nWhy skipping raises bits per byte here (the paper reports a gain): at the paper's alpha 0.8 the "
                  f"rule finds {paper['void_share']:.0%} of all layer updates void, almost all of them in the last "
                  f"layers (active rates {', '.join(f'{a:.2f}' for a in paper['active_rate'])}), so `last` answers "
                  f"most tokens from an early layer's state, which the head was never trained to read. That is close "
                  f"to cutting the network to its first {same_depth['layers']} layers ({same_depth['bpb']:.3f} "
                  f"bits/byte, against {paper['bpb']:.3f} for `last` and {p['bpb']:.3f} for the plain model). "
                  f"The paper's 7B models are many times deeper; a {L}-layer model has no "
                  "redundant depth to give up.\n")
    md.append("\nActive-layer rate per phase at alpha 0.8 (4 held-out prompts of 32 tokens, up to 96 sampled tokens "
              "each, T = 0.8):\n")
    md.append(_table(["phase"] + [f"layer {i + 1}" for i in range(L)],
                     [[ph] + list(r["rates"][ph]) for ph in ("prompt", "generation")]))
    md.append(f"\nGeneration speed: {r['speed']['plain']:.0f} tok/s plain, {r['speed']['voids']:.0f} tok/s with "
              f"void tracking (`last` mode): every layer is still computed, the hooks only add work.\n")
    hm = r.get("heatmap")
    if hm:
        a = np.array(hm["active"]).T
        plt = _fig(figs / "voids_heatmap.png")
        fig, ax = plt.subplots(figsize=(7.5, 2.2))
        ax.imshow(a, aspect="auto", cmap="Greys", interpolation="nearest", vmin=0, vmax=1)
        ax.axvline(hm["prompt_tokens"] - 0.5, color="tab:red", lw=1.5)
        ax.set_yticks(range(a.shape[0]), [f"layer {i + 1}" for i in range(a.shape[0])])
        ax.set_xlabel("token (prompt | generation); black = active, white = void")
        fig.tight_layout()
        fig.savefig(figs / "voids_heatmap.png", dpi=90)
        plt.close(fig)
        md.append("\n![active layers per token](inference/voids_heatmap.png)\n")
    return "\n".join(md)


def _se(p: float, n: int) -> float:
    """Standard error of an accuracy p measured on n items."""
    return math.sqrt(max(p * (1 - p), 1e-12) / max(n, 1))


def _closest_depth(first_layers: list[dict], void_share: float, n_layers: int) -> dict | None:
    """The first-k-layers row whose share of dropped layers is closest to `void_share`."""
    return min(first_layers, key=lambda f: abs(1 - f["layers"] / n_layers - void_share), default=None)


def _decoding(r: dict) -> str:
    c = r["classifier"]
    same = _model_of(r)
    md = ["## Beam, conditional beam and in-context navigation\n",
          f"{same}; {r.get('prompts', 12)} held-out 48-character prompts, {r.get('new_tokens', 100)} new tokens. "
          f"Degeneracy classifier: "
          f"{c['samples']} own samples ({c['degenerate_samples']:.0%} degenerate), {c['examples']} prefixes, "
          f"training accuracy {c['train_accuracy']:.2f}. distinct-n pools all outputs; "
          f"'distinct-2 per prompt' pools the outputs of one prompt (diversity among answers); "
          f"rep-n = repeated word n-grams within an output; log p = mean per-token log-probability under the model "
          f"(of the output's last tokens within one context). Beam rows list the 4 best hypotheses; in-context "
          f"navigation answers stop at a blank line, so they are shorter than the others; 'degenerate' = empty or "
          f"more than 30% repeated word trigrams.\n"]
    md.append(_table(["method", "outputs", "distinct-1", "distinct-2", "distinct-2 per prompt", "rep-2", "rep-4",
                      "degenerate", "log p / token", "seconds"],
                     [[x["method"], x["outputs"], x["distinct_1"], x["distinct_2"], x["distinct_2_within_prompt"],
                       x["rep_2"], x["rep_4"], x["degenerate"], x["logprob_per_token"], x["seconds"]]
                      for x in r["rows"]]))
    md.append("\nFirst output for the first prompt (`" + r["prompt_example"].replace("\n", "⏎") + "`):\n")
    for x in r["rows"]:
        md.append(f"- {x['method']}: `{x['example'].replace(chr(10), '⏎').replace('`', chr(39))}`")
    return "\n".join(md) + "\n"


def write_report(results: dict, docs: Path) -> Path:
    figs = docs / "inference"
    parts = [USAGE]
    if "machine" in results:
        m = results["machine"]
        walls = ", ".join(f"{p} {results[p]['wall_s'] / 60:.1f} min" for p in ("lminfinite", "knn", "voids", "decoding")
                          if p in results and "wall_s" in results[p])
        from .inference import MODEL  # the defaults, whatever run measured the parts

        d = {"layers": MODEL.model.n_layers, "d_model": MODEL.model.d_model, "heads": MODEL.model.n_heads,
             "context": MODEL.model.context, "steps": MODEL.train.max_steps, "batch": MODEL.train.batch_size}
        parts.append(f"## Measurements\n\nRegenerate everything: `{COMMAND}` (trains the two "
                     f"small models first if `runs/infer` lacks them; `--parts knn` etc. for a subset; "
                     f"`--render-only` redraws this page from `runs/infer/results.json`, copied to "
                     f"`docs/inference-results.json`). "
                     f"Measured on {m['cpu']}, {m['threads']} thread(s), torch {m['torch']}, a CPU shared with other "
                     f"jobs (timings are same-run ratios). The default model: char-level, {d['layers']} layers, "
                     f"d_model {d['d_model']}, {d['heads']} heads, RoPE, context {d['context']}, {d['steps']} steps "
                     f"of {d['batch']} x {d['context']} tokens on the tinyshakespeare training split (`MODEL` in "
                     "`lmlab/experiments/inference.py`). Each section names the model and the command its numbers "
                     f"come from, since parts may be measured by different runs. Wall time per part, each in the run "
                     f"that measured it: {walls}."
                     + ("" if "knn" in results else " kNN-LM is not in these results (`--parts knn` measures it).")
                     + "\n")
    if "lminfinite" in results:
        parts.append(_lminfinite(results["lminfinite"], figs))
    if "knn" in results:
        parts.append(_knn(results["knn"], figs))
    if "voids" in results:
        parts.append(_voids(results["voids"], figs))
    if "decoding" in results:
        parts.append(_decoding(results["decoding"]))
    parts.append(_verdicts(results))
    return common.write_text(docs / "inference.md", "\n".join(p for p in parts if p))


# --- verdicts -----------------------------------------------------------------------------------
REPORT = "docs/inference.md"
COMMAND = "nice lmlab experiment inference"


def _lminfinite_claims(r: dict, setting: str) -> list[dict]:
    from .claims import claim

    out = []
    command = r.get("command", COMMAND + " --parts lminfinite")
    long = r["long"]
    by = {(x["method"], x["multiplier"]): x["bpb"] for x in long["rows"]}
    mults = sorted({x["multiplier"] for x in long["rows"]})
    top, base = max(mults), by["vanilla", 1]
    flat = all(by["lminfinite", m] <= 1.05 * base for m in mults)
    blows = by["vanilla", top] > 1.2 * base
    out.append(claim(
        "LM-Infinite: Simple On-the-Fly Length Generalization for Large Language Models",
        "Without training, LM-Infinite keeps perplexity flat far beyond the training length, where the vanilla model's explodes.",
        f"{setting}; windows up to {top}x the context ({top * long['context']} tokens), {long['n_windows']} per length",
        f"bits/byte at 1x {base:.3f}; at {top}x vanilla {by['vanilla', top]:.3f}, LM-Infinite {by['lminfinite', top]:.3f} "
        f"(worst LM-Infinite length {max(by['lminfinite', m] for m in mults):.3f})",
        "holds" if flat and blows else "mixed" if flat or blows else "does not hold at this scale",
        "rule: LM-Infinite within 5% of the 1x bits/byte at every length and vanilla more than 20% above it at the longest",
        REPORT, command))
    speed = [x for x in r["speed"] if "model" in x]
    longest = {}
    for x in speed:
        key = (x["model"], x["batch"])
        if x["multiplier"] >= longest.get(key, {"multiplier": 0})["multiplier"]:
            longest[key] = x
    ups = [x["speedup"] for x in longest.values()]
    names = {x["model"]: f"{x['layers']}x{x['d_model']} {'trained' if x['model'] == 'trained' else 'random-init'}"
             for x in speed}
    out.append(claim(
        "LM-Infinite: Simple On-the-Fly Length Generalization for Large Language Models",
        "LM-Infinite decodes faster than vanilla attention on long inputs (the paper: 2.72x at 32k tokens), its cache being bounded.",
        f"greedy decoding of {speed[0]['n_new']} tokens after prompts of 1x-{max(x['multiplier'] for x in speed)}x the "
        "context (" + ", ".join(f"{names[m]} batch {b} up to {x['multiplier']}x" for (m, b), x in longest.items())
        + f"), fastest of {speed[0]['runs']} interleaved runs, 1 CPU thread",
        "; ".join(f"{names[m]} batch {b} at {x['multiplier']}x ({x['prompt_len']} tokens): {x['speedup']:.2f}x"
                  for (m, b), x in longest.items()),
        "holds" if min(ups) > 1.2 else "mixed" if max(ups) > 1.2 else "does not hold at this scale",
        "rule: speed-up above 1.2x at the longest prompt for every model and batch; batch 1 is bound by reading the weights",
        REPORT, command))
    if r.get("passkey"):
        out.append(_passkey_claim(r, command))
    return out


PASSKEY_MARGIN = 0.05   # the smallest difference that counts (also the tasks experiment's)


def _passkey_claim(r: dict, command: str) -> dict:
    """The rule of the tasks experiment's passkey claim (tasks_report.passkey_claim), with one seed: the
    model must retrieve at 1x, and LM-Infinite must beat vanilla beyond 1x at every depth by more than
    the margin and two standard errors of the difference (the tasks experiment uses the seed spread)."""
    from .claims import PASSKEY_LEARNED, claim, passkey_verdict

    pk, ctx = r["passkey"], r["passkey_model"]["context"]
    depths = sorted({x["depth"] for x in pk})

    def acc(method, cond):
        rows = [x for x in pk if x["method"] == method and cond(x)]
        return float(np.mean([x["accuracy"] for x in rows])), sum(x.get("n", 1) for x in rows)

    at1, _ = acc("vanilla", lambda x: x["length"] <= ctx)
    gains, parts = [], []
    for d in depths:
        (li, n), (va, _) = (acc(m, lambda x: x["length"] > ctx and x["depth"] == d) for m in ("lminfinite", "vanilla"))
        gains.append(li - va > max(PASSKEY_MARGIN, 2 * math.hypot(_se(li, n), _se(va, n))))
        parts.append(f"depth {d:g}: LM-Infinite {li:.2f} vs vanilla {va:.2f}")
    beyond = sorted({x["length"] for x in pk if x["length"] > ctx})
    verdict, why = passkey_verdict(at1, gains)
    pm = r["passkey_model"]
    return claim(
        "LM-Infinite: Simple On-the-Fly Length Generalization for Large Language Models",
        "A Lambda-shaped mask with a distance cap keeps passkey retrieval working beyond the training length.",
        f"{pm['layers']}-layer d_model {pm['d_model']} char model ({pm['params']:,} params), {pm['steps']} steps on "
        f"synthetic passkey text, context {ctx}, prompts up to {max(beyond)} tokens, {pk[0].get('n', 20)} keys per cell, "
        "greedy, one seed",
        f"exact match at {', '.join(f'{L // ctx}x' for L in beyond)} the context (1x vanilla {at1:.2f}): " + "; ".join(parts),
        verdict, f"{why}; rule: as the tasks experiment's (1x accuracy >= {PASSKEY_LEARNED}, a gain > "
                 f"{PASSKEY_MARGIN} and 2 standard errors at every depth)",
        REPORT, command)


def _voids_claims(r: dict, setting: str) -> list[dict]:
    from .claims import claim

    p = r["plain"]
    acting = [q for q in r["quality"] if q["mode"] != "detect"]
    se = _se(p["mc_acc"], r["items"])
    bpb_gain = [q for q in acting if q["bpb"] < p["bpb"] - 1e-3]
    mc_gain = [q for q in acting if q["mc_acc"] > p["mc_acc"] + 2 * se]
    all_worse = all(q["bpb"] > p["bpb"] + 1e-3 for q in acting)
    if bpb_gain or mc_gain:
        verdict = "mixed" if all_worse else "holds"
    else:
        verdict = "does not hold at this scale" if all_worse else "mixed"
    best_bpb = min(acting, key=lambda q: q["bpb"])
    best_mc = max(acting, key=lambda q: q["mc_acc"])
    alphas = ", ".join(f"{a:g}" for a in dict.fromkeys(q["alpha"] for q in acting))
    quality = claim(
        "Void in Language Models",
        "Answering from the last non-void layer (L2 Adaptive Computation) improves a benchmark score while using "
        "fewer layers (the paper: Qwen2.5-7B MMLU 69.2 -> 71.3 with 30% of layers).",
        f"{setting}; alpha in {{{alphas}}}, modes last and skip; {r['eval_tokens']:,} held-out tokens, "
        f"{r['items']} multiple-choice items from held-out text",
        f"plain: {p['bpb']:.3f} bits/byte, MC acc {p['mc_acc']:.3f}; best bits/byte with voids {best_bpb['bpb']:.3f} "
        f"({best_bpb['mode']}, alpha {best_bpb['alpha']:g}); best MC acc {best_mc['mc_acc']:.3f} "
        f"({best_mc['mode']}, alpha {best_mc['alpha']:g})",
        verdict,
        f"rule: holds if any setting lowers bits/byte or raises MC acc by more than 2 standard errors ({2 * se:.3f}); "
        f"the model has {len(p.get('active_rate', r['rates']['prompt']))} layers, little depth to spare",
        REPORT, COMMAND + " --parts voids")
    paper = next(q for q in r["quality"] if q["alpha"] == 0.8 and q["mode"] == "skip")
    ratio = paper["eval_s"] / p["eval_s"]
    compute = claim(
        "Void in Language Models",
        "Skipping void layers saves computation.",
        f"{setting}; alpha 0.8, skip mode, wall time of one bits-per-byte pass against the plain model's (same run)",
        f"{paper['void_share']:.0%} of layer updates found void; wall time {ratio:.2f}x the plain model's",
        "holds" if ratio < 0.95 and paper["void_share"] > 0.05 else "does not hold at this scale",
        "rule: holds if the pass takes under 0.95x the plain time; every layer still runs, since the void test of a "
        "layer needs that layer's output",
        REPORT, COMMAND + " --parts voids")
    return [quality, compute]


def _decoding_claims(r: dict, setting: str) -> list[dict]:
    from .claims import claim

    rows = {x["method"]: x for x in r["rows"]}
    beam, cond = rows.get("beam 4"), rows.get("conditional beam 4")
    icn = rows.get("in-context navigation (4)")
    out = []
    if beam and cond:
        better = cond["rep_4"] < beam["rep_4"] and cond["degenerate"] <= beam["degenerate"]
        close = cond["logprob_per_token"] >= beam["logprob_per_token"] - 0.05
        out.append(claim(
            "Making the Most of your Model: Methods for Finetuning and Applying Pretrained Transformers",
            "Conditional beam search finds outputs of high likelihood that are not degenerate (empty or repetitive).",
            f"{setting}; beam 4 with and without a degeneracy classifier, {r['prompts']} held-out prompts, "
            f"{r['new_tokens']} new tokens",
            f"rep-4 {beam['rep_4']:.3f} -> {cond['rep_4']:.3f}, degenerate {beam['degenerate']:.2f} -> "
            f"{cond['degenerate']:.2f}, log p/token {beam['logprob_per_token']:.3f} -> {cond['logprob_per_token']:.3f}",
            "holds" if better and close else "mixed" if better or close else "does not hold at this scale",
            "rule: less repetition, no more degenerate outputs, log p within 0.05 nats/token of plain beam search",
            REPORT, r.get("command", COMMAND + " --parts decoding")))
    if icn and beam:
        out.append(claim(
            "Correlation and Navigation in the Vocabulary Key Representation Space of Language Models",
            "In-context navigation (earlier answers in the context, a new first token each time) gives more diverse "
            "answers than the top-ranked list of one decoding.",
            f"{setting}; 4 answers per prompt, {r['prompts']} held-out prompts",
            f"distinct-2 among one prompt's answers: in-context navigation {icn['distinct_2_within_prompt']:.3f}, "
            f"beam 4 {beam['distinct_2_within_prompt']:.3f}",
            "holds" if icn["distinct_2_within_prompt"] > beam["distinct_2_within_prompt"] else "does not hold at this scale",
            "rule: higher distinct-2 among a prompt's answers than the 4 beam hypotheses",
            REPORT, r.get("command", COMMAND + " --parts decoding")))
    return out


def claims_of(results: dict) -> list[dict]:
    """The paper claims these measurements decide (LM-Infinite, voids, conditional beam, ICN), by stated rules."""
    out = []
    for part, fn in (("lminfinite", _lminfinite_claims), ("voids", _voids_claims), ("decoding", _decoding_claims)):
        if part in results:
            m = results[part].get("model") or results.get("model", {})  # the model this part was measured on
            params = (results[part].get("machine") or results["machine"])["params"]
            setting = (f"char-level {m.get('layers')}-layer d_model {m.get('d_model')} model ({params:,} "
                       f"params), {m.get('steps')} steps on tinyshakespeare, context {m.get('context')}, one seed")
            out += fn(results[part], setting)
    return out


def _verdicts(results: dict) -> str:
    cs = results.get("claims", [])
    if not cs:
        return ""
    md = ["## Verdicts\n", "Each paper claim measured above, decided by the rule named in its row (the same list is "
          "the `claims` of the results JSON; `docs/experiments/README.md` gathers all experiments'):\n"]
    md.append(_table(["paper", "claim", "our number", "verdict", "why"],
                     [[c["paper"].split(":")[0], c["claim"], c["number"], f"**{c['verdict']}**", c["why"]] for c in cs]))
    return "\n".join(md)
