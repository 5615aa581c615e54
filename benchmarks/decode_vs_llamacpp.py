"""Batch-1 decoding: lmlab (fp32, bf16, int8, w8a8) vs llama.cpp (f32, bf16, q8_0) on the same weights,
each against the memory roofline of the bytes it reads per token.

    python benchmarks/decode_vs_llamacpp.py --llama-venv VENV --llama-cpp DIR [RUN | --shape demo|100m|350m]
        [--threads 1] [--new 128] [--reps 5] [--compile] [--prefill 128,1024]

A benchmark only: llama.cpp is no dependency of lmlab. VENV is a separate virtual environment
holding llama-cpp-python, gguf and sentencepiece (which the converter imports), llama.cpp built for
this CPU (`CMAKE_ARGS=-DGGML_NATIVE=ON pip install llama-cpp-python gguf sentencepiece`); its
site-packages are appended to this process's path, so both run in one process. DIR is llama.cpp's source tree (vendor/llama.cpp of the llama-cpp-python sdist) for its
convert_hf_to_gguf.py.

The model: RUN (a Llama-shaped lmlab run: RoPE, RMSNorm, SwiGLU), or random weights of the demo
shape (4 x 256), of the 100M shape (the demo's architecture at 14 x 768, 12 heads: the size of
docs/performance.md's 100M point) or of a 350M one (28 x 1024, 16 heads; 354M parameters), with
the tinyshakespeare char tokenizer (the two larger shapes with a 1,024-token context). It is
exported with `lmlab export --to hf` and converted by llama.cpp's convert_hf_to_gguf.py to f32, bf16 and q8_0;
where the converter refuses the model (e.g. a vocabulary it cannot read), or with --gguf-writer,
the GGUF is written here with
the `gguf` package from the same exported tensors, q/k rows permuted to llama.cpp's RoPE layout as
the converter does. Checks that both compute the same thing, at f32: greedy continuations of the
prompt agree token for token, and per-token log-probs of held-out text (the last tenth of
tinyshakespeare) agree within --logprob-tol. Timing: the same 8-token prompt, --new tokens greedy,
the tokens after the first timed (the first pays for the prompt), every side once per round in a
rotating order after an untimed round, medians and the spread over --reps rounds. Prefill: the
time to run a --prefill-token prompt (held-out text) into an empty cache, the same way.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lmlab import runtime

RUNTIME = runtime.configure()  # the lmlab command's process settings

import torch  # noqa: E402

# the 100M shape with a 1,024-token context, so that prefill can be timed at 1,024 (RoPE: no weights change)
SHAPES = {"demo": [], "100m": ["model.n_layers=14", "model.d_model=768", "model.n_heads=12", "model.context=1024"],
          "350m": ["model.n_layers=28", "model.d_model=1024", "model.n_heads=16", "model.context=1024"]}
GGUF_TYPES = ("f32", "bf16", "q8_0")
# the like-for-like pairs: lmlab dtype -> llama.cpp type (int8 is weight-only; w8a8 also rounds the
# activations to int8, as q8_0's dot products do)
PAIRS = {"float32": "f32", "bfloat16": "bf16", "int8": "q8_0", "w8a8": "q8_0"}


def venv_site(venv: Path) -> str:
    found = sorted(venv.glob("lib/python*/site-packages"))
    if not found:
        sys.exit(f"error: {venv} has no lib/python*/site-packages (make the venv first, see the docstring)")
    return str(found[0])


def random_run(shape: str, out: Path) -> Path:
    """A run directory with random weights of a shape and the tinyshakespeare char tokenizer."""
    from lmlab import checkpoint, config
    from lmlab.train.loop import prepare

    cfg = config.load("demo", ["model.dropout=0", "data.corpus=tinyshakespeare", *SHAPES[shape]])
    torch.manual_seed(0)
    tokenizer, _, _, model = prepare(cfg, None)
    checkpoint.save(out, 0, model, None, tokenizer, cfg, {"note": "random init for decode_vs_llamacpp"})
    return out


def held_out_ids(tokenizer, n: int) -> list[int]:
    from lmlab.data.corpora import read_corpus

    text = "".join(d.text for d in read_corpus("tinyshakespeare"))
    return tokenizer.encode(text[int(len(text) * 0.9):][:n * 8])[:n]


# --- GGUF ----------------------------------------------------------------------------------------

def convert(llama_cpp: Path, site: str, hf_dir: Path, outtype: str, out: Path) -> str | None:
    """Run llama.cpp's converter (this interpreter's torch and transformers, then the llama venv's
    packages: sentencepiece); None on success, else the last line of its complaint."""
    script = llama_cpp / "convert_hf_to_gguf.py"
    launch = ("import runpy, sys; sys.path.insert(0, sys.argv[1]); sys.path.append(sys.argv[2]); "
              "sys.argv = sys.argv[3:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    p = subprocess.run([sys.executable, "-c", launch, str(llama_cpp), site, str(script), str(hf_dir),
                        "--outtype", outtype, "--outfile", str(out)], capture_output=True, text=True)
    if p.returncode == 0 and out.is_file():
        return None
    lines = [ln for ln in (p.stderr + p.stdout).splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit {p.returncode}"


def to_rope_pairs(w, n_heads: int):
    """HF's rotate-half q/k rows (first half, second half of each head) to llama.cpp's adjacent pairs."""
    rows, cols = w.shape
    return w.reshape(n_heads, 2, rows // n_heads // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def write_gguf(hf_dir: Path, tokenizer, outtype: str, out: Path) -> None:
    """The exported Llama as GGUF with the gguf package: tensors under llama.cpp's names, 2-D weights
    in `outtype` (norms f32, as the converter keeps them), and the vocabulary as a list of tokens
    (ids 0-255 byte tokens <0xXX>, then one per character, end-of-text a control token)."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    hp = json.loads((hf_dir / "config.json").read_text())
    t = load_file(str(hf_dir / "model.safetensors"))
    w = gguf.GGUFWriter(str(out), "llama")
    n_heads, n_kv = hp["num_attention_heads"], hp["num_key_value_heads"]
    w.add_context_length(hp["max_position_embeddings"])
    w.add_embedding_length(hp["hidden_size"])
    w.add_block_count(hp["num_hidden_layers"])
    w.add_feed_forward_length(hp["intermediate_size"])
    w.add_head_count(n_heads)
    w.add_head_count_kv(n_kv)
    w.add_rope_dimension_count(hp["head_dim"])
    w.add_rope_freq_base(hp["rope_theta"])
    w.add_layer_norm_rms_eps(hp["rms_norm_eps"])
    w.add_vocab_size(hp["vocab_size"])
    qtype = {"f32": gguf.GGMLQuantizationType.F32, "bf16": gguf.GGMLQuantizationType.BF16,
             "q8_0": gguf.GGMLQuantizationType.Q8_0}[outtype]
    w.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "bf16": gguf.LlamaFileType.MOSTLY_BF16,
                     "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[outtype])
    tokens, types = [], []
    for i in range(hp["vocab_size"]):
        if i < 256:
            tokens.append(f"<0x{i:02X}>")
            types.append(gguf.TokenType.BYTE)
        elif i < tokenizer.vocab_size:
            tokens.append(tokenizer.token_text(i) if i != tokenizer.eot_id else "<|endoftext|>")
            types.append(gguf.TokenType.CONTROL if i == tokenizer.eot_id else gguf.TokenType.NORMAL)
        else:
            tokens.append(f"<unused{i}>")
            types.append(gguf.TokenType.UNUSED)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))
    w.add_token_types(types)
    w.add_bos_token_id(tokenizer.eot_id)
    w.add_eos_token_id(tokenizer.eot_id)
    w.add_add_bos_token(False)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    layer = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for name, x in t.items():
        if name.startswith("model.layers."):
            i, rest = name[len("model.layers."):].split(".", 1)
            part = rest.rsplit(".", 1)[0]
            gname = f"blk.{i}.{layer[part]}.weight"
            if part == "self_attn.q_proj":
                x = to_rope_pairs(x, n_heads)
            elif part == "self_attn.k_proj":
                x = to_rope_pairs(x, n_kv)
        else:
            gname = names[name]
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
            w.add_tensor(gname, x)
        else:
            w.add_tensor(gname, gguf.quants.quantize(x, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gguf_bytes_per_token(path: Path, n_layers: int, kv_width: int, kv_len: float) -> dict:
    """Bytes one llama.cpp batch-1 step reads: every tensor at its stored type, the token embedding
    as one row unless it is also the head (no output.weight), and the f16 KV cache (llama.cpp's
    default) at kv_len keys."""
    import gguf

    tensors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    weights = 0
    for name, t in tensors.items():
        nbytes = int(t.n_bytes)
        if name == "token_embd.weight" and "output.weight" in tensors:
            nbytes //= int(t.shape[-1])  # one row: the reader's shape is (width, rows)
        weights += nbytes
    kv = 2 * n_layers * kv_width * kv_len * 2
    return {"weights": weights, "kv_cache": kv, "total": weights + kv, "kv_len": kv_len,
            "types": sorted({t.tensor_type.name for t in tensors.values()})}


# --- the two decoders ----------------------------------------------------------------------------

def lmlab_timed(model, prompt: list[int], n_new: int) -> tuple[list[int], float]:
    """Greedy ids and seconds for the n_new - 1 steps after the first token."""
    from lmlab.infer.generate import decode_steps

    steps = decode_steps(model, torch.tensor([prompt]), n_new, temperature=0.0)
    ids = [int(next(steps)[0])]
    t = time.perf_counter()
    ids += [int(x[0]) for x in steps]
    return ids, time.perf_counter() - t


def llama_timed(llm, prompt: list[int], n_new: int) -> tuple[list[int], float]:
    llm.reset()
    gen = llm.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True)
    ids = [next(gen)]
    t = time.perf_counter()
    for _ in range(n_new - 1):
        ids.append(next(gen))
    dt = time.perf_counter() - t
    gen.close()
    return ids, dt


@torch.no_grad()
def lmlab_prefill(model, ids: list[int]) -> float:
    """Seconds to run a prompt through the model into an empty KV cache (one chunk, as generate does)."""
    t = time.perf_counter()
    model(torch.tensor([ids]), cache=model.new_cache())
    return time.perf_counter() - t


def llama_prefill(llm, ids: list[int]) -> float:
    llm.reset()
    t = time.perf_counter()
    llm.eval(ids)
    return time.perf_counter() - t


@torch.no_grad()
def lmlab_logprobs(model, ids: list[int]) -> list[float]:
    logits = model(torch.tensor([ids]))[0][0].float()
    return logits.log_softmax(-1)[:-1].gather(1, torch.tensor(ids[1:])[:, None])[:, 0].tolist()


def llama_logprobs(llm, ids: list[int]) -> list[float]:
    import numpy as np

    llm.reset()
    llm.eval(ids)
    scores = np.asarray(llm.scores[:len(ids) - 1], dtype=np.float64)
    scores -= scores.max(1, keepdims=True)
    logp = scores - np.log(np.exp(scores).sum(1, keepdims=True))
    return [float(logp[i, ids[i + 1]]) for i in range(len(ids) - 1)]


def agree_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", nargs="?", help="a Llama-shaped lmlab run (default: random weights of --shape)")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="demo")
    ap.add_argument("--llama-venv", type=Path, required=True)
    ap.add_argument("--llama-cpp", type=Path, required=True, help="llama.cpp's source tree (convert_hf_to_gguf.py)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--eval-tokens", type=int, default=200, help="held-out tokens for the log-prob check")
    ap.add_argument("--logprob-tol", type=float, default=1e-3, help="max |log-prob difference| allowed at f32 (nats)")
    ap.add_argument("--prefill", default="128,1024", help="prompt lengths whose processing is timed (up to the context)")
    ap.add_argument("--compile", action="store_true", help="also time lmlab's compiled decoder at each precision")
    ap.add_argument("--gguf-writer", action="store_true",
                    help="write the GGUF files here with the gguf package instead of running the converter")
    ap.add_argument("--keep", type=Path, help="keep the exported and converted files here")
    args = ap.parse_args()
    site = venv_site(args.llama_venv)
    sys.path.append(site)  # llama_cpp and gguf, after this venv's own packages
    torch.set_num_threads(args.threads)
    import llama_cpp

    from lmlab import bench, kernels
    from lmlab.checkpoint import load_model
    from lmlab.infer.prepare import for_inference

    tmp_ctx = tempfile.TemporaryDirectory(prefix="lmlab-llamacpp-")
    work = args.keep or Path(tmp_ctx.name)
    work.mkdir(parents=True, exist_ok=True)
    run = Path(args.run) if args.run else random_run(args.shape, work / "run")
    hf_dir = work / "hf"
    if not (hf_dir / "config.json").exists():
        subprocess.run([sys.executable, "-c", "import sys; from lmlab.cli import main; sys.exit(main(sys.argv[1:]))",
                        "export", str(run), "--to", "hf", str(hf_dir)], check=True, capture_output=True)
    fp32, tokenizer, cfg = load_model(run)
    fp32 = fp32.float().eval()
    mc = fp32.cfg
    context, n_layers = mc.context, mc.n_layers
    kv_width = (mc.n_kv_heads or mc.n_heads) * (mc.d_model // mc.n_heads)
    n_new = min(args.new, context - 8)
    held = held_out_ids(tokenizer, min(args.eval_tokens, context))
    prompt = held[:8]
    kv_len = 8 + n_new / 2  # the timed steps' mean cache length, as `lmlab bench generate`

    ggufs, conversion = {}, {}
    for t in GGUF_TYPES:
        path = work / f"model-{t}.gguf"
        if not path.exists():
            refused = None if args.gguf_writer else convert(args.llama_cpp, site, hf_dir, t, path)
            if refused or args.gguf_writer:
                write_gguf(hf_dir, tokenizer, t, path)
            conversion[t] = ("gguf package" + (f" (the converter refused: {refused})" if refused else "")
                             if refused or args.gguf_writer else "convert_hf_to_gguf.py")
        ggufs[t] = path

    def llama(t, logits_all=False):
        return llama_cpp.Llama(model_path=str(ggufs[t]), n_ctx=context, n_batch=context, n_threads=args.threads,
                               n_threads_batch=args.threads, logits_all=logits_all, verbose=False, seed=0)

    # fidelity, at f32 (and how far each lower precision moves from lmlab's fp32)
    ref_lp = lmlab_logprobs(fp32, held)
    ref_ids, _ = lmlab_timed(fp32, prompt, n_new)
    fidelity = {}
    for t in GGUF_TYPES:
        llm = llama(t, logits_all=True)
        lp = llama_logprobs(llm, held)
        diffs = [abs(a - b) for a, b in zip(ref_lp, lp)]
        ids, _ = llama_timed(llm, prompt, n_new)
        fidelity[f"llama_{t}"] = {"logprob_max_abs_diff_vs_lmlab_fp32": max(diffs),
                                  "logprob_mean_abs_diff": statistics.fmean(diffs),
                                  "mean_logprob": statistics.fmean(lp),
                                  "greedy_agree_prefix_vs_lmlab_fp32": agree_prefix(ids, ref_ids)}
        del llm
    fidelity["lmlab_fp32_mean_logprob"] = statistics.fmean(ref_lp)
    f32 = fidelity["llama_f32"]
    f32["logprob_within_tol"] = f32["logprob_max_abs_diff_vs_lmlab_fp32"] <= args.logprob_tol

    sides = {}
    for t in GGUF_TYPES:
        sides[f"llama.cpp {t}"] = ("llama", llama(t), t)
    for d, t in PAIRS.items():
        m, _, _ = load_model(run)
        sides[f"lmlab {d}"] = ("lmlab", for_inference(m.float(), d, torch.device("cpu")), t)
    for d, t in PAIRS.items() if args.compile else ():
        m, _, _ = load_model(run)
        sides[f"lmlab {d} compiled"] = ("lmlab", for_inference(m.float(), d, torch.device("cpu"), compile=True), t)
    for name, (kind, model, t) in sides.items():
        if kind == "lmlab":
            fidelity[name.replace(" ", "_") + "_greedy_agree_prefix_vs_fp32"] = agree_prefix(lmlab_timed(model, prompt, n_new)[0], ref_ids)
            if not name.endswith("compiled"):  # how far each precision moves from fp32, as for llama.cpp's
                lp = lmlab_logprobs(model, held)
                diffs = [abs(a - b) for a, b in zip(ref_lp, lp)]
                fidelity[name.replace(" ", "_")] = {"logprob_max_abs_diff_vs_lmlab_fp32": max(diffs),
                                                    "logprob_mean_abs_diff": statistics.fmean(diffs),
                                                    "mean_logprob": statistics.fmean(lp)}

    bw = bench.bandwidth((args.threads,), reps=5)
    gbps = bw["by_threads"][str(args.threads)]["read_gbps"]
    load_before = bench.loadavg()
    names = list(sides)
    rates = {k: [] for k in names}
    for r in range(args.reps + 1):  # round 0 warms every side up (and compiles)
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            kind, model, _ = sides[name]
            ids, dt = (llama_timed if kind == "llama" else lmlab_timed)(model, prompt, n_new)
            assert len(ids) == n_new
            if r:
                rates[name].append((n_new - 1) / dt)
    # prefill: the eager sides only (the compiled decoder runs prompts eager too)
    lengths = [n for n in (int(v) for v in args.prefill.split(",") if v) if n <= context]
    long_ids = held_out_ids(tokenizer, max(lengths, default=0))
    prefill_sides = [n for n in names if not n.endswith("compiled")]
    prefill = {f"{name} @ {n}": [] for n in lengths for name in prefill_sides}
    for r in range(args.reps + 1):
        for n in lengths:
            for name in prefill_sides[r % len(prefill_sides):] + prefill_sides[:r % len(prefill_sides)]:
                kind, model, _ = sides[name]
                dt = (llama_prefill if kind == "llama" else lmlab_prefill)(model, long_ids[:n])
                if r:
                    prefill[f"{name} @ {n}"].append(n / dt)
    prefill_rows = {k: {"tokens_per_s": statistics.median(v), "spread": (max(v) - min(v)) / statistics.median(v),
                        "all": v} for k, v in prefill.items()}
    load_after = bench.loadavg()

    rows = {}
    for name in names:
        kind, model, t = sides[name]
        per_token = (gguf_bytes_per_token(ggufs[t], n_layers, kv_width, kv_len) if kind == "llama"
                     else bench.decode_bytes_per_token(model, kv_len))
        med = statistics.median(rates[name])
        limit = gbps * 1e9 / per_token["total"]
        rows[name] = {"tokens_per_s": med, "min": min(rates[name]), "max": max(rates[name]),
                      "spread": (max(rates[name]) - min(rates[name])) / med, "all": rates[name],
                      "bytes_per_token": per_token, "roofline_tokens_per_s": limit, "fraction_of_roofline": med / limit}
    ratios = {f"lmlab {d}{c} / llama.cpp {t}": rows[f"lmlab {d}{c}"]["tokens_per_s"] / rows[f"llama.cpp {t}"]["tokens_per_s"]
              for c in ("", " compiled") if c == "" or args.compile for d, t in PAIRS.items()}
    print(json.dumps({
        "benchmark": "decode_vs_llamacpp", "run": args.run or f"random weights, {args.shape} shape",
        "model": {"n_layers": n_layers, "d_model": mc.d_model, "n_heads": mc.n_heads, "vocab_size": mc.vocab_size,
                  "context": context, "params": fp32.num_params()},
        "cpu": bench.cpu_info(), "kernel_isa": kernels.isa(),
        "threads": args.threads, "batch": 1, "prompt_tokens": 8, "new_tokens": n_new, "timed_tokens": n_new - 1,
        "reps": args.reps, "greedy": True, "conversion": conversion or "reused files in --keep",
        "fidelity": fidelity, "logprob_tol": args.logprob_tol, "eval_tokens": len(held),
        "bandwidth": bw, "bandwidth_gbps_used": gbps, "sides": rows, "ratios": ratios,
        "prefill_tokens_per_s": prefill_rows, "prefill_lengths": lengths,
        "loadavg_before": load_before, "loadavg_after": load_after, "process_settings": RUNTIME,
        "torch": torch.__version__, "llama_cpp_python": llama_cpp.__version__,
        "note": "tokens/s over the tokens after the first; medians of rounds in a rotating order; "
                "spread = (max - min) / median"}, indent=1))
    tmp_ctx.cleanup()
    return 0 if f32["logprob_within_tol"] else 1


if __name__ == "__main__":
    sys.exit(main())
