"""Tensor and sequence parallelism (train.parallel = tp, fsdp+tp) on CPU with gloo: the sharded
model computes what one process computes, trains along the same losses, and its checkpoints are
ordinary ones; variants without a plan are refused before any rank starts."""
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lmlab import checkpoint, config
from lmlab.errors import LmlabError
from lmlab.infer.generate import generate
from lmlab.train import parallel
from lmlab.train.loop import train
from lmlab.train.metrics import read as read_metrics
from ranks import finish, launch, run_ranks

WORKER = Path(__file__).with_name("tp_worker.py")
# constant learning rate, no dropout, fp32: the sharded runs must match one process to rounding
SETTINGS = ["train.max_steps=20", "train.min_lr=3e-3", "train.warmup_steps=0", "train.eval_every=10",
            "train.ckpt_every=10", "train.keep_last=5", "train.dtype=float32", "model.dropout=0.0",
            "train.progress=false", "model.n_kv_heads=2", "model.ffn=swiglu"]
LAYOUTS = {  # name: (ranks, settings of each rank, settings of the one process that sees the same batches)
    "tp": (2, ["train.parallel=tp", "train.batch_size=4"], ["train.batch_size=4"]),
    "fsdp+tp": (4, ["train.parallel=fsdp+tp", "train.tp_size=2", "train.batch_size=2"],
                ["train.batch_size=2", "train.grad_accum=2"]),
}


def train_argv(out, settings):
    argv = ["-m", "lmlab.cli", "train", "-c", "tiny", "-o", str(out)]
    for s in [*SETTINGS, *settings]:
        argv += ["--set", s]
    return argv


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tp")
    procs = {name: launch(train_argv(root / name, ranked), n) for name, (n, ranked, _) in LAYOUTS.items()}
    threads = torch.get_num_threads()
    try:  # the one-process references run meanwhile, on one thread as each rank
        for name, (_, _, single) in LAYOUTS.items():
            cfg = config.load("tiny", [*SETTINGS, *single, "train.threads=1"])
            train(cfg, root / f"{name}-single", progress=False, echo=lambda *_: None)
    finally:
        torch.set_num_threads(threads)
    for name, p in procs.items():
        codes, outputs = finish(p)
        assert codes == [0] * len(p), outputs[0][1][-3000:]
    return root


def test_sharded_forward_and_backward_equal_one_process(tmp_path):
    out = tmp_path / "diffs.json"
    run_ranks([str(WORKER), str(out)])
    results = json.loads(out.read_text())
    assert len(results) == 5
    for name, r in results.items():
        assert r["loss"] <= 1e-5 * r["ref_loss"], name
        assert r["logits"] <= 1e-5, name
        assert r["logits_type"] == "Tensor", name  # without targets: full logits, as from one process
        assert r["grads"] <= 1e-5 * r["grad_scale"], name
        assert r["names_equal"], name


@pytest.mark.parametrize("layout", LAYOUTS)
def test_training_follows_one_process(runs, layout):
    sharded, single = read_metrics(runs / layout), read_metrics(runs / f"{layout}-single")
    assert [r["step"] for r in sharded] == [r["step"] for r in single] == list(range(1, 21))
    for a, b in zip(sharded, single):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["tokens"] == b["tokens"]  # a tp group draws one batch: tokens count data ranks only
        if "val_loss" in b:
            assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    assert sharded[-1]["loss"] < sharded[0]["loss"] - 1.0
    ca = checkpoint.resolve(runs / layout)
    wa = checkpoint.load_tensors(ca, checkpoint.read_state(ca))  # read whole from the shards
    wb = load_file(checkpoint.resolve(runs / f"{layout}-single") / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:  # 20 Adam steps amplify the rounding of the sharded sums a little
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-3, atol=1e-4)


def test_tp_checkpoint_generates_in_one_process_what_the_single_run_generates(runs):
    texts = []
    for run in (runs / "tp", runs / "tp-single"):
        model, tokenizer, _ = checkpoint.load_model(run)
        texts.append(generate(model, tokenizer, "ROMEO:", max_new_tokens=40, temperature=0.0))
    assert texts[0] == texts[1] and len(texts[0]) > len("ROMEO:")
    assert not parallel.active()


@pytest.mark.parametrize("settings, message", [
    (["model.pattern=AMF"], "no plan for model.pattern letters M"),
    (["model.pattern=ALF"], "no plan for model.pattern letters L"),
    (["model.ffn=lowrank"], "no plan for model.ffn='lowrank'"),
    (["model.meta_tokens=4"], "no plan for model.meta_tokens"),
    (["model.n_kv_heads=1"], "model.n_kv_heads=1 is not divisible by the tensor-parallel size 2"),
    (["model.n_heads=2", "model.d_model=66"], None),  # fine: 2 heads over 2 ranks
    (["train.parallel=fsdp+tp", "train.tp_size=3"], "train.tp_size dividing the 2 ranks"),
    (["train.parallel=ddp", "train.tp_size=2"], "needs train.parallel=tp or fsdp+tp"),
    (["train.parallel=tp", "train.tp_size=1"], "use train.parallel=fsdp+tp"),
    (["train.parallel=pp"], "train.parallel must be one of ddp, fsdp, tp, fsdp+tp, got 'pp'"),
    (["train.parallel=ddp", "train.offload=optimizer"], "needs several ranks under torchrun and "
                                                        "train.parallel=fsdp or fsdp+tp (got 2 rank(s), ddp)"),
    (["train.parallel=fsdp", "train.offload=optimizer"], None),
    (["train.offload=cpu"], "train.offload must be one of , optimizer, got 'cpu'"),
])
def test_layouts_without_a_plan_are_refused_up_front(monkeypatch, settings, message):
    monkeypatch.setenv("WORLD_SIZE", "2")
    if message is None:
        parallel.check(config.load("tiny", ["train.parallel=tp", *settings]))
        return
    with pytest.raises(LmlabError, match=re.escape(message)):  # an unknown kind already in config.load
        parallel.check(config.load("tiny", ["train.parallel=tp", *settings]))


def test_cli_refuses_an_ssm_under_tp_before_any_work(tmp_path):
    """One line on stderr, exit 2, and nothing written: the check runs before the process group."""
    out = tmp_path / "run"
    env = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    done = subprocess.run([sys.executable, "-m", "lmlab.cli", "train", "-c", "tiny", "-o", str(out),
                           "--set", "train.parallel=tp", "--set", "model.pattern=AMF"],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: tensor parallelism has no plan for model.pattern letters M (only A and F); "
        "use train.parallel=ddp or fsdp"]
    assert not (out / "config.toml").exists() and not (out / "checkpoints").exists()


def test_sharded_checkpoint_has_one_shard_file_per_rank_and_nothing_half_written(runs):
    ckpt = checkpoint.resolve(runs / "tp")
    state = checkpoint.read_state(ckpt)
    assert state["format"] == "dcp" and state["step"] == 20
    assert sorted(p.name for p in ckpt.iterdir()) == ["dcp", "rng.pt", "state.json", "tokenizer"]
    assert sorted(state["dcp_sha256"]) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert not list((runs / "tp" / "checkpoints").glob(".tmp-*"))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_resume_in_one_process_from_the_sharded_checkpoint(runs, tmp_path, layout):
    """2 (tp) or 4 (fsdp+tp) ranks -> 1 process: the step-10 shards are read back whole and the
    run goes on to step 20 along the uninterrupted sharded run's losses."""
    run = tmp_path / layout
    shutil.copytree(runs / layout, run)
    shutil.rmtree(run / "checkpoints" / "step_0000020")
    (run / "checkpoints" / "latest").write_text("step_0000010")
    _, _, single = LAYOUTS[layout]
    threads = torch.get_num_threads()
    try:
        cfg = config.load(str(run / "config.toml"), [*single, "train.threads=1"])
        train(cfg, run, resume=True, progress=False, echo=lambda *_: None)
    finally:
        torch.set_num_threads(threads)
    resumed, whole = read_metrics(run), read_metrics(runs / layout)
    assert [r["step"] for r in resumed] == list(range(1, 21))
    for a, b in zip(resumed[10:], whole[10:]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    ckpt = checkpoint.resolve(run)  # written by one process: the plain files again
    assert (ckpt / "model.safetensors").is_file() and not (ckpt / "dcp").exists()


def test_a_damaged_or_foreign_shard_is_refused(runs, tmp_path):
    run = tmp_path / "damaged"
    shutil.copytree(runs / "tp", run)
    ckpt = checkpoint.resolve(run)
    shard = ckpt / "dcp" / "__1_0.distcp"
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(LmlabError, match="corrupted, truncated or incomplete"):
        checkpoint.load_model(run)
    # a .metadata that names anything but DCP's own classes is never unpickled
    (ckpt / "dcp" / ".metadata").write_bytes(pickle.dumps(subprocess.Popen))
    with pytest.raises(LmlabError, match="unsafe .*subprocess.Popen is not part of"):
        checkpoint.load_tensors(ckpt, checkpoint.read_state(ckpt), verify=False)


def test_export_reads_a_sharded_checkpoint(tmp_path):
    """One process can write the sharded format too: `lmlab export` gives the same HF files from
    it as from the plain checkpoint of the same weights."""
    from lmlab import checkpoint_dcp, tokenizers
    from lmlab.cli import main
    from lmlab.model import Transformer
    from lmlab.train.optim import make_optimizer

    cfg = config.load("tiny", ["model.norm=rmsnorm", "model.ffn=swiglu"])
    tokenizer = tokenizers.build(cfg.tokenizer, lambda: "ROMEO: to be or not")
    cfg.model.vocab_size = tokenizer.vocab_size
    model = Transformer(cfg.model)
    optimizer = make_optimizer(model, cfg.train, torch.device("cpu"))
    checkpoint.save(tmp_path / "plain", 1, model, optimizer, tokenizer, cfg, {})
    checkpoint_dcp.save(tmp_path / "sharded", 1, model, optimizer, tokenizer, cfg, {})
    for name in ("plain", "sharded"):
        assert main(["export", str(tmp_path / name), "--to", "hf", str(tmp_path / f"hf-{name}"), "--no-check"]) == 0
    assert (tmp_path / "hf-plain" / "model.safetensors").read_bytes() == \
        (tmp_path / "hf-sharded" / "model.safetensors").read_bytes()


def resume_argv(run, settings):
    argv = ["-m", "lmlab.cli", "train", "-c", str(run / "config.toml"), "-o", str(run), "--resume"]
    for s in settings:
        argv += ["--set", s]
    return argv


def test_resume_on_two_ranks_from_the_four_rank_shards(runs, tmp_path):
    """4 ranks (dp 2 x tp 2) -> 2 ranks (fsdp over the same 2 data ranks, no tp): the step-10 shards
    are resharded on load and steps 11-20 follow the uninterrupted 4-rank run."""
    run = tmp_path / "fsdp+tp"
    shutil.copytree(runs / "fsdp+tp", run)
    shutil.rmtree(run / "checkpoints" / "step_0000020")
    (run / "checkpoints" / "latest").write_text("step_0000010")
    run_ranks(resume_argv(run, ["train.parallel=fsdp", "train.tp_size=0"]), 2)
    resumed, whole = read_metrics(run), read_metrics(runs / "fsdp+tp")
    assert [r["step"] for r in resumed] == list(range(1, 21))
    for a, b in zip(resumed[10:], whole[10:]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    state = checkpoint.read_state(checkpoint.resolve(run))
    assert state["step"] == 20 and sorted(state["dcp_sha256"]) == [".metadata", "__0_0.distcp", "__1_0.distcp"]


def test_a_killed_rank_stops_the_other_with_one_line_and_the_run_resumes_exactly(tmp_path, monkeypatch):
    """SIGKILL one of 2 tp ranks once a checkpoint is complete: the survivor exits within the
    group timeout with a one-line error, and a resume from the last complete checkpoint trains
    along the uninterrupted run's losses (constant learning rate: max_steps moves nothing)."""
    import signal
    import time

    monkeypatch.setenv("LMLAB_DIST_TIMEOUT", "60")
    run = tmp_path / "killed"
    procs = launch([*train_argv(run, LAYOUTS["tp"][1]), "--set", "train.max_steps=100000"], 2)
    latest, deadline = run / "checkpoints" / "latest", time.time() + 300
    try:
        while not latest.is_file() and time.time() < deadline and procs[0].poll() is None:
            time.sleep(0.01)
        assert latest.is_file(), procs[0].communicate()[1][-3000:]
        procs[1].send_signal(signal.SIGKILL)
        _, err = procs[0].communicate(timeout=120)  # LMLAB_DIST_TIMEOUT bounds a silent peer; a dead one fails at once
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
    assert procs[0].returncode == 2 and procs[1].returncode == -signal.SIGKILL
    assert err.strip().splitlines()[-1].startswith("error: rank 0: lost contact with another rank")
    assert "Traceback" not in err
    step = checkpoint.read_state(checkpoint.resolve(run))["step"]
    assert step % 10 == 0 and step >= 10
    run_ranks(resume_argv(run, [f"train.max_steps={step + 3}"]), 2)
    reference = tmp_path / "reference"
    threads = torch.get_num_threads()
    try:
        train(config.load("tiny", [*SETTINGS, *LAYOUTS["tp"][2], "train.threads=1", f"train.max_steps={step + 3}"]),
              reference, progress=False, echo=lambda *_: None)
    finally:
        torch.set_num_threads(threads)
    resumed, whole = read_metrics(run), read_metrics(reference)
    assert [r["step"] for r in resumed] == [r["step"] for r in whole] == list(range(1, step + 4))
    for a, b in zip(resumed, whole):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
