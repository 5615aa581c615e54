"""The training loop: config in, run directory out (see DESIGN.md for the run-directory contract).

Knows nothing of a specific architecture: it builds the model from the config and calls it.
"""
from __future__ import annotations

import contextlib
import math
import signal
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from .. import config as config_mod
from .. import tokenizers
from ..data import loader
from ..data.shards import token_splits
from ..data.task_tokens import training_documents
from ..errors import LmlabError
from ..embeddings import frozen_matrix
from ..model import Transformer
from ..model.training_hooks import set_progress, train_stats
from .. import checkpoint
from . import objectives
from . import parallel as par
from ..device import autocast, pick_device, pick_dtype
from .metrics import MetricsLog
from .optim import make_optimizer
from .schedule import lr_at


class _Stop(Exception):
    """SIGTERM/SIGINT arrived: checkpoint and stop at the next step boundary."""


@torch.no_grad()
def evaluate_split(model, ids: np.ndarray, token_nbytes: np.ndarray, n_windows: int, batch_size: int,
                   context: int, device, dtype) -> dict:
    """Mean loss per token and bits per byte over fixed windows of a split (under torchrun with
    DDP each rank scores every world-th batch of the same windows and the totals are summed)."""
    was_training = model.training
    model.eval()
    starts = loader.eval_starts(len(ids), n_windows, context)
    nats, count, nbytes = 0.0, 0, 0
    nb = torch.from_numpy(token_nbytes)
    part, parts = par.eval_part(model)
    for i in range(part * batch_size, len(starts), batch_size * parts):
        x, y = loader.windows(ids, starts[i:i + batch_size], context)
        x, y = x.to(device), y.to(device)
        with autocast(device, dtype):
            logits, _ = model(x)
        losses = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum",
                                                   ignore_index=-1)  # -1: not a target (task data)
        nats += losses.item()
        count += int((y >= 0).sum())
        nbytes += int(nb[y[y >= 0].cpu()].sum())
    model.train(was_training)
    if parts > 1:
        nats, count, nbytes = par.sum_floats([nats, count, nbytes], device)
    loss = nats / max(count, 1)
    return {"val_loss": loss, "val_ppl": math.exp(min(loss, 700)), "val_bpb": nats / math.log(2) / max(nbytes, 1)}


def prepare(cfg, resume_ckpt: Path | None):
    """Tokenizer, token splits and model for a config (tokenizer from the checkpoint on resume)."""
    docs = training_documents(cfg)  # the corpus, or a task's training examples
    if resume_ckpt is not None:
        tokenizer = tokenizers.load(resume_ckpt / "tokenizer")
    else:
        tokenizer = tokenizers.build(cfg.tokenizer, lambda: "".join(d.text for d in docs))
    if cfg.model.vocab_size == 0:
        cfg.model.vocab_size = tokenizer.vocab_size + objectives.reserved_ids(cfg.train)  # e.g. [MASK]
    elif cfg.model.vocab_size < tokenizer.vocab_size:
        raise LmlabError(f"model.vocab_size={cfg.model.vocab_size} is smaller than the tokenizer's {tokenizer.vocab_size}")
    train_ids, val_ids = token_splits(cfg, tokenizer, docs)
    try:  # a frozen matrix built from the tokenizer (glyph) is rendered here, or read back on resume
        matrix = None if resume_ckpt is not None else frozen_matrix(cfg.model, tokenizer)
        model = Transformer(cfg.model, embedding_matrix=matrix)
    except ValueError as e:
        raise LmlabError(str(e)) from None
    return tokenizer, train_ids, val_ids, model


def train(cfg, out_dir, resume: bool = False, progress: bool | None = None, echo=print) -> dict:
    """Under torchrun (see parallel.py) each rank runs this with DDP; rank 0 writes the run dir
    and holds its lock (a second writer is refused before any work)."""
    with checkpoint.run_lock(out_dir) if par.is_main() else contextlib.nullcontext():
        return _train_group(cfg, Path(out_dir), resume, progress, echo)


def _train_group(cfg, out: Path, resume: bool, progress: bool | None, echo) -> dict:
    device = pick_device(cfg.train.device)
    device, owns_group = par.init(device, cfg)
    try:
        try:
            result = _train(cfg, out, resume, progress, echo, device)
        except Exception as e:
            lost = par.lost_rank(e) if owns_group else None
            if lost is None:
                raise
            raise lost from None
        if owns_group:
            # leave together: a rank that tore its gloo group down while rank 0 was still writing
            # the last checkpoint sometimes aborted at exit ("terminate called without an active
            # exception", ~1 in 8 two-rank runs); not on errors, where the other rank may be gone
            par.barrier()
        return result
    finally:
        if owns_group:
            par.shutdown()


def _train(cfg, out: Path, resume: bool, progress: bool | None, echo, device) -> dict:
    resume_ckpt = None
    if resume and (out / checkpoint.CKPT_DIR / checkpoint.LATEST).is_file():
        resume_ckpt = checkpoint.resolve(out)
        saved = checkpoint.read_state(resume_ckpt)
        ranks = saved.get("data", {}).get("data_ranks")
        config_mod.check_resume(config_mod.from_dict(saved["config"]), cfg, (ranks, par.planned_dp_world(cfg.train)) if ranks else None)
    elif not resume and any((out / checkpoint.CKPT_DIR).glob("step_*")):
        raise LmlabError(f"{out} already holds a run; pass --resume to continue it, or choose another -o")
    tc = cfg.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)  # same seed on every rank: same init
    dtype = pick_dtype(tc.dtype, device)
    main = par.is_main()
    with par.main_first():  # rank 0 fills the token cache, the others then read it
        tokenizer, train_ids, val_ids, model = prepare(cfg, resume_ckpt)
    model.to(device)
    optimizer = make_optimizer(model, tc, device)

    start_step, tokens_seen, elapsed_before = 0, 0, 0.0
    if resume_ckpt is not None:
        state = checkpoint.read_state(resume_ckpt)
        model.load_state_dict(checkpoint.load_tensors(resume_ckpt, state))
        saved = checkpoint.load_optim(resume_ckpt)
        if saved is not None:
            optimizer.load_state_dict(saved["optimizer"])
            torch.set_rng_state(saved["torch_rng"])
            if saved["cuda_rng"] and device.type == "cuda":
                torch.cuda.set_rng_state_all(saved["cuda_rng"])
        start_step, tokens_seen = state["step"], state.get("tokens_seen", 0)
        elapsed_before = state.get("elapsed_s", 0.0)
        if main:
            echo(f"resuming from {resume_ckpt} (step {start_step})")

    metrics, writer = None, None
    if main:
        out.mkdir(parents=True, exist_ok=True)
        config_mod.save(cfg, out / "config.toml")
        metrics = MetricsLog(out / "metrics.jsonl", start_step if resume_ckpt is not None else None)
        writer = _tensorboard(out) if tc.tensorboard else None
    wrapped = par.wrap(model, device, tc.parallel, tc.tp_size, tc.offload)  # DDP: `model` stays the plain module
    if par.sharded(model):  # FSDP sharded `model` in place: a new optimizer for its new parameters
        saved_optim, optimizer = optimizer.state_dict(), make_optimizer(model, tc, device)
        par.load_sharded_optimizer(model, optimizer, saved_optim)
    step_model = torch.compile(wrapped) if tc.compile else wrapped
    token_nbytes = tokenizer.token_nbytes()
    context = cfg.model.context
    tokens_per_step = tc.batch_size * tc.grad_accum * context * par.dp_world()  # batch_size is per data rank

    def last_good() -> str:
        latest = out / checkpoint.CKPT_DIR / checkpoint.LATEST
        return latest.read_text().strip() if latest.is_file() else "none (no checkpoint was written yet)"

    def save(step: int):
        if not par.all_finite(model.parameters()):
            raise LmlabError(f"parameters are not finite after step {step}; training stopped, "
                             f"the last good checkpoint is {last_good()}")
        par.save_checkpoint(out, step, model, optimizer, tokenizer, cfg,  # FSDP, TP: every rank its shards
                            {"tokens_seen": tokens_seen, "elapsed_s": elapsed_before + time.perf_counter() - t0,
                             "data": {"sampler": "seeded by (train.seed, step)", "next_step": step,
                                      "data_ranks": par.dp_world()}},
                            keep_last=tc.keep_last)

    stop_requested = []

    def on_signal(signum, frame):
        if par.world() == 1:
            raise _Stop()
        stop_requested.append(signum)  # ranks agree at the step's all-reduce, then stop together

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    show = (tc.progress if progress is None else progress) and main
    bar = _progress_bar(tc.max_steps, start_step, show)
    step_times, last_eval, last_loss = [], {}, None  # None: no step trained in this call
    t0 = time.perf_counter()
    step = start_step
    model.train()
    try:
        while step < tc.max_steps:
            t_step = time.perf_counter()
            lr = lr_at(step, tc.lr, tc.min_lr, tc.warmup_steps, tc.max_steps)
            set_progress(model, step / tc.max_steps)  # e.g. self-guided FFNs decay their dense guide
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = 0.0
            if par.world() > 1:  # own dropout masks per rank, reproducible per step (resume stays exact)
                torch.manual_seed(par.step_seed(tc.seed, step))
            for micro in range(tc.grad_accum):
                x, y = objectives.draw(cfg, train_ids, tokenizer, step, par.micro_index(micro))
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with par.micro_step(wrapped, last=micro == tc.grad_accum - 1):
                    with autocast(device, dtype):
                        _, loss = step_model(x, y)
                    aux = _aux_loss(model)
                    (loss + aux if aux is not None else loss).div(tc.grad_accum).backward()
                loss_sum += loss.detach()
            out_of_time = bool(tc.max_minutes) and (time.perf_counter() - t0) / 60 >= tc.max_minutes
            # Mean over ranks: every rank sees the same loss, so a NaN stops all of them together.
            last_loss, stop, out_of_time = par.mean_and_flags(loss_sum / tc.grad_accum, bool(stop_requested),
                                                              out_of_time)
            if not math.isfinite(last_loss):
                raise LmlabError(f"loss is {last_loss} at step {step + 1}; training stopped, "
                                 f"the last good checkpoint is {last_good()}")
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens_seen += tokens_per_step
            dt = time.perf_counter() - t_step
            step_times.append(dt)
            record = {"step": step, "loss": last_loss, "lr": lr, "tokens": tokens_seen,
                      "tok_per_s": tokens_per_step / dt, "elapsed_s": elapsed_before + time.perf_counter() - t0}
            record.update(train_stats(model))  # numbers modules report, e.g. MoE tokens per expert
            if tc.eval_every and (step % tc.eval_every == 0 or step == tc.max_steps or out_of_time):
                evaluate = objectives.evaluator(cfg, tokenizer, evaluate_split)  # clm: evaluate_split
                last_eval = evaluate(model, val_ids, token_nbytes, tc.eval_batches * tc.batch_size,
                                           tc.batch_size, context, device, dtype)
                record.update(last_eval)
                if main:
                    bar.write(f"step {step}: val_loss {last_eval['val_loss']:.4f}  val_bpb {last_eval['val_bpb']:.4f}")
            if main and (step % max(tc.log_every, 1) == 0 or "val_loss" in record):
                metrics.write(record)
                if writer is not None:
                    for k, v in record.items():
                        if k != "step" and isinstance(v, (int, float)):
                            writer.add_scalar(k, v, step)
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.4f}", tok_s=f"{record['tok_per_s']:.0f}", refresh=False)
            if (tc.ckpt_every and step % tc.ckpt_every == 0) or step == tc.max_steps or out_of_time:
                save(step)
            if stop:
                raise _Stop()
            if out_of_time:
                if main:
                    bar.write(f"stopping at step {step}: train.max_minutes={tc.max_minutes} reached")
                break
    except _Stop:
        save(step)
        par.barrier()  # the others wait for rank 0's checkpoint before they exit
        raise LmlabError(f"interrupted at step {step}; checkpoint saved, continue with --resume") from None
    finally:
        bar.close()
        if metrics is not None:
            metrics.close()
        if writer is not None:
            writer.close()
        for s, h in old_handlers.items():
            signal.signal(s, h)
    timed = step_times[2:] or step_times
    return {"step": step, "loss": last_loss, **last_eval, "params": model.num_params(),
            "tok_per_s": tokens_per_step / statistics.median(timed) if timed else 0.0,
            "elapsed_s": elapsed_before + time.perf_counter() - t0, "dtype": str(dtype).replace("torch.", ""),
            "device": str(device), "memory_bytes": par.memory_accounting(model, optimizer)}


def _aux_loss(model):
    """The sum of the modules' `aux_loss` terms (lmlab.model.protocol.ModuleProtocol), reset to None."""
    total = None
    for m in model.modules():
        aux = getattr(m, "aux_loss", None)
        if isinstance(aux, torch.Tensor):
            total = aux if total is None else total + aux
            m.aux_loss = None
    return total


def _progress_bar(total: int, initial: int, show: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not show, unit="step", dynamic_ncols=True,
                desc="train", smoothing=0.1)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise LmlabError("train.tensorboard=true needs the tensorboard package (pip install tensorboard)") from None
    return SummaryWriter(str(out / "tensorboard"))
