"""Every verb against every kind of bad input: exit code 2, one `error:` line on stderr, no
traceback, and nothing changed in the run directory (or next to it). Plus the run-directory lock:
two writers at once, and a holder killed with SIGKILL."""
import contextlib
import hashlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmlab import checkpoint, config
from lmlab.cli import main
from lmlab.errors import LmlabError
from lmlab.train.loop import train

QUIET = dict(progress=False, echo=lambda *a: None)


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """One tiny trained run and one file of each bad kind, side by side in one directory."""
    root = tmp_path_factory.mktemp("bad-input")
    train(config.load("tiny", ["train.max_steps=2", "train.eval_every=0", "train.ckpt_every=2"]), root / "run", **QUIET)
    (root / "empty.txt").write_text("")
    (root / "empty.toml").write_text("\n")
    (root / "latin1.txt").write_bytes("café au lait\n".encode("latin-1"))
    (root / "latin1.toml").write_bytes("[train]\nmax_steps = 2 # café\n".encode("latin-1"))
    (root / "file.txt").write_text("ROMEO: a plain file\n")
    (root / "dir").mkdir()
    nbest = json.dumps({"id": 1, "hypotheses": [{"text": "a b", "score": -1.0}]})
    (root / "nbest-ok.jsonl").write_text(nbest + "\n")
    (root / "nbest-bad.jsonl").write_text(nbest + "\n{not json\n")
    (root / "noresume").mkdir()
    (root / "badtask").mkdir()  # a task directory whose second test line is not an example
    (root / "badtask" / "test.jsonl").write_text('{"input": "a b", "target": "c"}\n{"input": "a b"}\n')
    (root / "glyphs").mkdir()  # a frozen-glyph run made with other settings than --quick's
    (root / "glyphs" / "results.json").write_text(json.dumps({"settings": {"steps": 1}, "fonts": {}}))
    return root


DOCS = Path(__file__).resolve().parents[1] / "docs"


def stamps(root: Path) -> dict:
    """Path -> (size, mtime) of every file under root: a cheap check that a case wrote nothing there."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


def tree(root: Path) -> dict:
    """Path -> SHA-256 of every file and '' for every directory under root."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
            for p in sorted(root.rglob("*"))}


# (class, argv, a fragment of the error line, bytes on stdin); {r} = the run, {p} = the directory
# that holds it and the bad files, {m} = a path that does not exist.
CASES = [
    # a path that does not exist
    ("missing", "train -c {m}.toml -o {p}/new", "not found", None),
    ("missing", "generate {m} --prompt a", "does not exist", None),
    ("missing", "generate {r} --prompt-file {m}", "prompt file", None),
    ("missing", "generate {r} --knn {m}", "kNN datastore", None),
    ("missing", "generate {r} --beam 2 --degeneracy {m}", "classifier file", None),
    ("missing", "eval {m}", "does not exist", None),
    ("missing", "eval {r} --data {m}", "not found", None),
    ("missing", "info {m}", "does not exist", None),
    ("range", "experiment architectures --steps 0 --out {p}/exp", "must be >= 1", None),
    ("range", "experiment architectures --seeds 0 --out {p}/exp", "must be >= 1", None),
    ("missing", "experiment frozen-glyph --quick --doc {m}.md --out {p}/exp", "no such page", None),
    ("type", "experiment frozen-glyph --quick --doc {p}/file.txt --out {p}/exp", "needs exactly one", None),
    ("type", "experiment frozen-glyph --quick --resume --out {p}/glyphs", "other settings or fonts", None),
    ("missing", "experiment architectures --reuse-only --out {p}/exp --docs {p}/exp", "none of the grid's", None),
    ("range", "experiment architectures --width 24 --out {p}/exp", "multiples of 16", None),
    ("type", "experiment architectures --scale-widths 32,wide --out {p}/exp", "comma-separated list", None),
    ("range", "experiment superbpe --held-out 1.5 --out {p}/exp", "must be in (0, 1)", None),
    ("range", "experiment hso --steps 0 --work {p}/exp", "must be >= 1", None),
    ("range", "experiment hso --hso-lrs 0 --work {p}/exp --doc {p}/exp/hso.md", "step sizes > 0", None),
    ("range", "experiment hso --chunk 128 --work {p}/exp --doc {p}/exp/hso.md", "below the model's context", None),
    ("range", "experiment btm --expert-steps 0 --work {p}/exp", "must be >= 1", None),
    ("range", "experiment btm --lr -1 --work {p}/exp", "--lr", None),
    ("range", "experiment knnlm --prompts 0 --work {p}/exp --doc {p}/exp/k.md", "--prompts: must be >= 1", None),
    ("type", "experiment knnlm --features bert --work {p}/exp --doc {p}/exp/k.md", "unknown feature kind 'bert'", None),
    ("type", "experiment knnlm --seeds , --work {p}/exp --doc {p}/exp/k.md", "at least one sampling seed", None),
    ("type", "task make nope -o {p}/t", "unknown task", None),
    ("type", "eval {r} --task nope", "known tasks: passkey", None),
    ("type", "eval {r} --task {p}/badtask", "badtask/test.jsonl:2: expected an object", None),
    ("range", "experiment tasks --steps 0 --out {p}/exp --docs {p}/exp", "--steps: must be >= 1", None),
    ("type", "experiment tasks --parts nope --out {p}/exp --docs {p}/exp", "unknown part 'nope'", None),
    ("range", "experiment tasks --seeds -1 --out {p}/exp --docs {p}/exp", "--seeds", None),
    ("range", "experiment tasks --jobs 0 --out {p}/exp --docs {p}/exp", "--jobs: must be >= 1", None),
    ("range", "experiment tasks --passkey-steps 0 --out {p}/exp --docs {p}/exp", "--passkey-steps: must be >= 1", None),
    ("type", "experiment tasks --jobs two --out {p}/exp --docs {p}/exp", "--jobs", None),
    ("range", "experiment objectives --seeds 1,1 --out {p}/exp --docs {p}/exp", "--seeds must be distinct", None),
    ("type", "experiment objectives --seeds one --out {p}/exp --docs {p}/exp", "--seeds must be a comma-separated", None),
    ("range", "experiment inference --steps 0 --out {p}/exp --docs {p}/exp", "--steps: must be >= 1", None),
    ("range", "experiment inference --passkey-steps 0 --out {p}/exp --docs {p}/exp", "--passkey-steps: must be >= 1", None),
    ("range", "experiment norms --d-model 100 --doc {p}/exp/norms.md", "multiple of 64", None),
    ("range", "experiment norms --reps 0 --doc {p}/exp/norms.md", "--reps: must be >= 1", None),
    ("type", "finetune {r} --task author,nope -o {p}/ft", "unknown task 'nope'; known tasks: language", None),
    ("range", "finetune {r} --task author --steps -1 -o {p}/ft", "must be >= 0", None),
    ("range", "finetune {r} --task author --lr 0 -o {p}/ft", "must be > 0", None),
    ("missing", "finetune {m} --task author -o {p}/ft", "does not exist", None),
    ("type", "finetune {r} --task author -o {r}", "already holds a run", None),
    ("range", "edit {r} --curvature-mass 1.5 --data tinyshakespeare -o {p}/edited", "curvature", None),
    ("type", "probe {r} --task nope", "invalid choice", None),
    ("missing", "serve {m}", "does not exist", None),
    ("range", "plan -c tiny --devices 0 --memory-gb 80", "--devices", None),
    ("range", "plan -c tiny --devices 8 --memory-gb -1", "--memory-gb", None),
    ("missing", "plan -c {m}.toml --devices 8 --memory-gb 80", "not found", None),
    ("range", "plan -c tiny --devices 2 --memory-gb 8 --profile-steps 2", "--profile-steps must be 0 or >= 3", None),
    ("range", "plan -c tiny --devices 2 --memory-gb 8 --profile-steps -1", "argument --profile-steps: must be >= 0", None),
    ("type", "plan -c tiny --devices 2 --memory-gb 8 --profile-steps 3 --peak-tflops 1", "not both", None),
    ("missing", "btm ensemble {m} --data {p}/file.txt", "not a BTM directory", None),
    ("range", "btm ensemble {p}/dir --data {p}/file.txt --dev-sequences 0", "--dev-sequences", None),
    ("type", "btm branch {p}/dir nodomain", "NAME=CORPUS", None),
    ("missing", "rescore {m} --nbest {p}/nbest-ok.jsonl --weight 0.3", "does not exist", None),
    ("missing", "rescore {r} --nbest {m} --weight 0.3", "not found", None),
    ("type", "rescore {r} --nbest {p}/nbest-bad.jsonl --weight 0.3", "nbest-bad.jsonl:2", None),
    ("range", "rescore {r} --nbest {p}/nbest-ok.jsonl --weight -1", "--weight", None),
    ("range", "rescore {r} --nbest {p}/nbest-ok.jsonl --weight 0.3 --length-bonus nan", "--length-bonus", None),
    ("type", "rescore ngram:x:{p}/file.txt --nbest {p}/nbest-ok.jsonl --weight 0.3", "ngram:ORDER", None),
    ("range", "serve {r} --port 70000", "port", None),
    ("missing", "analyze {m} --what lens -o {p}/an", "does not exist", None),
    ("type", "analyze {r} --what nope -o {p}/an", "invalid choice", None),
    ("range", "analyze {r} --what keys --text {p}/file.txt --rank-top 0 -o {p}/an", "must be >= 1", None),
    ("range", "analyze {r} --what keys --text {p}/file.txt --rank-top 500 -o {p}/an", "--rank-top must be in", None),
    ("range", "analyze {r} --what keys --text {p}/file.txt --icn-answers -1 -o {p}/an", "must be >= 0", None),
    ("range", "analyze {r} --what laundry --scales=0,-1 -o {p}/an", "--scales must be numbers in [0, 100]", None),
    ("type", "analyze {r} --what laundry --scales two -o {p}/an", "comma-separated list of numbers", None),
    ("missing", "analyze {r} --what laundry --task {m} -o {p}/an", "neither a task directory", None),
    ("range", "analyze {r} --what lens --text {p}/file.txt --tuned-lens -1 -o {p}/an", "must be >= 0", None),
    ("type", "analyze {r} --what heads --tuned-lens 5 -o {p}/an", "--tuned-lens applies to --what lens", None),
    ("range", "experiment interpretability --laundry-steps 0", "must be >= 1", None),
    ("range", "experiment interpretability --laundry-warmup-steps -1", "must be >= 0", None),
    ("range", "experiment interpretability --work {p}/interp --laundry-warmup-lengths 2,30", "need vocab >= 30", None),
    ("type", "experiment interpretability --work {p}/interp --laundry-data mix", "--laundry-warmup-steps 0", None),
    ("missing", "tokenize {m}", "does not exist", None),
    ("missing", "tokenizer train {m} -o {p}/tok", "not found", None),
    ("missing", "tokenizer stats {r} {m}", "does not exist", None),
    ("missing", "glyphs --run {m} -o {p}/g.png", "does not exist", None),
    ("missing", "knn build {m} --data tinyshakespeare -o {p}/store", "does not exist", None),
    ("missing", "convert {m} --norm rmsnorm -o {p}/conv", "does not exist", None),
    ("missing", "export {m} --to hf {p}/hf", "does not exist", None),
    ("missing", "import-hf {m} -o {p}/imported", "does not exist", None),
    ("missing", "bench train -c {m}", "not found", None),
    ("missing", "bench generate {m}", "does not exist", None),
    ("missing", "experiment no-such-experiment", "invalid choice", None),
    ("missing", "experiment all --quick --skip nosuch --out {p}/all", "unknown experiment 'nosuch'", None),
    ("missing", "experiment index --results {m} --page {p}/README.md", "not a folder", None),
    ("missing", "demo -c {m} -o {p}/demo", "not found", None),
    ("missing", "train -o {p}/noresume --resume", "nothing to resume", None),
    # an empty file
    ("empty", "train -c {p}/empty.toml -o {p}/new", "is empty", None),
    ("empty", "train -c tiny -o {p}/new --set data.corpus={p}/empty.txt", "is empty", None),
    ("empty", "generate {r} --prompt-file {p}/empty.txt", "prompt is empty", None),
    ("empty", "eval {r} --data {p}/empty.txt", "is empty", None),
    ("empty", "tokenizer train {p}/empty.txt -o {p}/tok", "is empty", None),
    ("empty", "demo -c {p}/empty.toml -o {p}/demo", "is empty", None),
    # a value of the wrong type
    ("type", "train -c tiny -o {p}/new --set train.batch_size=eight", "train.batch_size", None),
    ("type", "train -c tiny -o {p}/new --set generate.dtype=fp8", "generate.dtype must be one of", None),
    ("type", "generate {r} --top-k 1.5", "invalid int value", None),
    ("type", "generate {r} --temperature hot", "invalid float value", None),
    ("type", "generate {r} --dtype fp8", "generate.dtype must be one of", None),
    ("type", "eval {r} --batch-size x", "invalid int value", None),
    ("type", "tokenize {r} --decode", "integer ids", b"1 two 3"),
    ("type", "tokenizer train {p}/file.txt --vocab many -o {p}/tok", "invalid int value", None),
    ("type", "knn build {r} --data tinyshakespeare -o {p}/store --index hnsw", "invalid choice", None),
    ("type", "convert {r} --norm batchnorm -o {p}/conv", "invalid choice", None),
    ("type", "glyphs --k x", "invalid int value", None),
    ("type", "bench peak --n big", "invalid int value", None),
    ("type", "experiment architectures --steps many", "invalid int value", None),
    ("type", "demo --eval-tokens all -o {p}/demo", "invalid int value", None),
    # a number out of its range
    ("range", "generate {r} --max-new-tokens -5", "generate.max_new_tokens must be >= 1, got -5", None),
    ("range", "generate {r} --temperature -1", "generate.temperature must be >= 0, got -1.0", None),
    ("range", "generate {r} --top-p 2", "generate.top_p must be in (0, 1], got 2.0", None),
    ("range", "generate {r} --top-p 0", "generate.top_p must be in (0, 1]", None),
    ("range", "generate {r} --top-k -1", "generate.top_k must be >= 0", None),
    ("range", "generate {r} --repetition-penalty 0", "generate.repetition_penalty must be > 0", None),
    ("range", "generate {r} --seed -1", "generate.seed must be >= 0", None),
    ("range", "generate {r} --num-samples 0", "--num-samples: must be >= 1", None),
    ("range", "generate {r} --beam 0", "--beam: must be >= 1", None),
    ("range", "generate {r} --hso -1", "--hso: must be >= 0", None),
    ("type", "generate {r} --hso some", "invalid int value", None),
    ("range", "generate {r} --hso 2 --hso-lr 0", "--hso-lr: must be > 0", None),
    ("range", "generate {r} --hso 2 --beam 2", "choose one of --beam, --hso", None),
    ("range", "eval {r} --hso 1 --hso-chunk 64", "--hso-chunk must be in [1, 63]", None),
    ("range", "generate {r} --knn {r} --lmbda 1.5", "--lmbda: must be in [0, 1]", None),
    ("range", "generate {r} --knn {r} --k 0", "--k: must be >= 1", None),
    ("range", "generate {r} --temperature nan", "generate.temperature must be >= 0, got nan", None),
    ("range", "train -c tiny -o {p}/new --set train.batch_size=0", "train.batch_size must be >= 1, got 0", None),
    ("range", "train -c tiny -o {p}/new --set generate.top_p=2", "generate.top_p must be in (0, 1], got 2.0", None),
    ("range", "train -c tiny -o {p}/new --set train.lr=0", "train.lr must be > 0", None),
    ("range", "train -c tiny -o {p}/new --set train.lr=inf", "train.lr must be > 0, got inf", None),
    ("range", "train -c tiny -o {p}/new --set model.dropout=1", "model.dropout must be in [0, 1)", None),
    ("range", "train -c tiny -o {p}/new --set data.val_fraction=-0.1", "data.val_fraction must be in [0, 1)", None),
    ("range", "train -c tiny -o {p}/new --set train.max_steps=0", "train.max_steps must be >= 1", None),
    ("range", "train -o {r} --resume --set model.d_model=32", "model.d_model cannot change on resume", None),
    ("range", "train -o {r} --resume --set train.seed=1", "train.seed cannot change on resume", None),
    ("range", "eval {r} --batch-size 0", "--batch-size: must be >= 1", None),
    ("range", "eval {r} --max-tokens -1", "--max-tokens: must be >= 0", None),
    ("range", "eval {r} --knn {r} --knn-temperature 0", "--knn-temperature: must be > 0", None),
    ("range", "knn build {r} --data tinyshakespeare -o {p}/store --batch-size 0", "must be >= 1", None),
    ("range", "convert {r} --norm rmsnorm -o {p}/conv --tolerance -1", "must be >= 0", None),
    ("range", "glyphs --k 0", "--k: must be >= 1", None),
    ("range", "tokenizer train {p}/file.txt --vocab -1 -o {p}/tok", "--vocab: must be >= 0", None),
    ("range", "bench peak --n 0", "--n: must be >= 1", None),
    ("range", "bench train -c tiny --steps 0", "--steps: must be >= 1", None),
    ("range", "bench generate {r} --new 0", "--new: must be >= 1", None),
    ("range", "demo -o {p}/demo --set train.batch_size=0", "train.batch_size must be >= 1", None),
    ("range", "demo -o {p}/demo --eval-tokens -1", "--eval-tokens: must be >= 0", None),
    # not UTF-8
    ("utf8", "train -c {p}/latin1.toml -o {p}/new", "config file", None),
    ("utf8", "train -c tiny -o {p}/new --set data.corpus={p}/latin1.txt", "not valid UTF-8", None),
    ("utf8", "generate {r} --prompt-file {p}/latin1.txt", "prompt file", None),
    ("utf8", "generate {r} --prompt-file -", "standard input is not valid UTF-8", "café".encode("latin-1")),
    ("utf8", "eval {r} --data {p}/latin1.txt", "not valid UTF-8", None),
    ("utf8", "tokenize {r}", "standard input is not valid UTF-8", "café".encode("latin-1")),
    ("utf8", "tokenizer stats {r} {p}/latin1.txt", "text file", None),
    ("utf8", "tokenizer train {p}/latin1.txt -o {p}/tok", "not valid UTF-8", None),
    # a file where a directory is expected
    ("file-for-dir", "train -c tiny -o {p}/file.txt", "is a file", None),
    ("file-for-dir", "generate {p}/file.txt --prompt a", "is a file", None),
    ("file-for-dir", "generate {r} --knn {p}/file.txt", "is a file", None),
    ("file-for-dir", "eval {p}/file.txt", "is a file", None),
    ("file-for-dir", "info {p}/file.txt", "is a file", None),
    ("file-for-dir", "tokenize {p}/file.txt", "is a file", None),
    ("file-for-dir", "tokenizer train {p}/file.txt -o {p}/file.txt", "is a file", None),
    ("file-for-dir", "tokenizer stats {p}/file.txt {p}/file.txt", "is a file", None),
    ("file-for-dir", "glyphs --run {p}/file.txt", "is a file", None),
    ("file-for-dir", "knn build {p}/file.txt --data tinyshakespeare -o {p}/store", "is a file", None),
    ("file-for-dir", "knn build {r} --data tinyshakespeare -o {p}/file.txt", "already exists", None),
    ("file-for-dir", "convert {r} --norm rmsnorm -o {p}/file.txt", "is a file", None),
    ("file-for-dir", "export {r} --to hf {p}/file.txt", "is a file", None),
    ("file-for-dir", "import-hf {p}/file.txt -o {p}/imported", "is a file", None),
    ("file-for-dir", "bench generate {p}/file.txt", "is a file", None),
    ("file-for-dir", "demo -c tiny -o {p}/file.txt", "is a file", None),
    # a directory where a file is expected
    ("dir-for-file", "train -c {p}/dir -o {p}/new", "is a directory", None),
    ("dir-for-file", "generate {r} --prompt-file {p}/dir", "is a directory", None),
    ("dir-for-file", "generate {r} --beam 2 --degeneracy {p}/dir", "is a directory", None),
    ("dir-for-file", "glyphs -o {p}/dir", "is a directory", None),
    ("dir-for-file", "tokenizer stats {r} {p}/dir", "is a directory", None),
    ("dir-for-file", "bench train -c {p}/dir", "is a directory", None),
    # a run another process is writing (the test holds its lock)
    ("locked", "train -c tiny -o {r}", "pid", None),
    ("locked", "train -o {r} --resume --set train.max_steps=4", "pid", None),
    ("locked", "demo -c tiny -o {r}", "pid", None),
    ("locked", "convert {p}/dir --norm rmsnorm -o {r}", "pid", None),
    ("locked", "convert {r} --norm rmsnorm -o {r}", "pid", None),
    ("locked", "knn build {r} --data tinyshakespeare -o {r}/store", "pid", None),
]


def test_every_verb_is_in_the_table():
    from lmlab.cli import build_parser

    verbs = set(next(a for a in build_parser()._actions if a.dest == "verb").choices)
    assert verbs == {argv.split()[0] for _, argv, _, _ in CASES}


@pytest.mark.parametrize("kind,argv,fragment,stdin", CASES, ids=[f"{c[0]}:{c[1].split(' -')[0]}" for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(place, capsys, monkeypatch, kind, argv, fragment, stdin):
    run = place / "run"
    args = [a.format(r=run, p=place, m=place / "missing") for a in argv.split()]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin or b"")))
    capsys.readouterr()
    with checkpoint.run_lock(run) if kind == "locked" else contextlib.nullcontext():
        before, docs_before = tree(place), stamps(DOCS)
        code = main(args)
        after = tree(place)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    assert fragment in lines[0] and "Traceback" not in err, lines[0]
    if kind == "locked":
        assert f"pid {os.getpid()}" in lines[0]
    assert after == before
    assert stamps(DOCS) == docs_before, "a refused command wrote into the project's docs/"


def test_readers_do_not_take_the_lock(place, capsys):
    run = place / "run"
    with checkpoint.run_lock(run):
        assert main(["info", str(run)]) == 0
        assert main(["generate", str(run), "--prompt", "RO", "--max-new-tokens", "3", "--temperature", "0"]) == 0
        assert main(["eval", str(run), "--max-tokens", "64"]) == 0
    capsys.readouterr()


def test_set_and_option_are_refused_alike(place, capsys):
    """--top-p 2 and --set generate.top_p=2 name the same field and range."""
    main(["generate", str(place / "run"), "--top-p", "2"])
    option = capsys.readouterr().err
    main(["train", "-c", "tiny", "-o", str(place / "new"), "--set", "generate.top_p=2"])
    assert "generate.top_p must be in (0, 1], got 2.0" in option and capsys.readouterr().err == \
        "error: generate.top_p must be in (0, 1], got 2.0\n"


def test_every_number_in_the_config_has_a_range():
    import dataclasses

    numeric = {f"{s}.{f.name}" for s in config.SECTIONS for f in dataclasses.fields(getattr(config.Config(), s))
               if f.type in ("int", "float")}
    assert numeric == set(config.RANGES)
    config.validate(config.Config())  # the defaults are in range, and so are the presets
    for preset in ("tiny", "demo", "shakespeare-char", "glyph"):
        config.load(preset)


def test_generate_dtypes_are_the_ones_inference_knows():
    from lmlab.infer.prepare import DTYPE_NAMES

    assert config.CHOICES["generate.dtype"] == DTYPE_NAMES


def test_json_output_is_strict(place, tmp_path, capsys):
    """A resumed run that trains no step has no loss: null, not NaN, in JSON any parser reads."""
    from lmlab import jsonio

    assert jsonio.dumps({"a": [math.nan, 1.5, (math.inf,)], "b": -math.inf}) == '{"a": [null, 1.5, [null]], "b": null}'
    run = tmp_path / "run"
    import shutil

    shutil.copytree(place / "run", run)
    assert main(["train", "-o", str(run), "--resume"]) == 0
    summary = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert summary["step"] == 2 and summary["loss"] is None


def test_resume_with_a_config_compares_it_with_the_run(place, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(place / "run", run)
    same = ["--set", "train.max_steps=2", "--set", "train.eval_every=0", "--set", "train.ckpt_every=2"]
    assert main(["train", "-c", "tiny", "-o", str(run), "--resume", *same, "--set", "generate.top_k=5"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 2
    assert main(["train", "-c", "tiny", "-o", str(run), "--resume", *same, "--set", "train.batch_size=4"]) == 2
    assert "train.batch_size cannot change on resume (the run has 8, asked 4)" in capsys.readouterr().err
    with pytest.raises(LmlabError, match="is a file, not a run directory"):  # the library refuses it too
        train(config.load("tiny"), place / "file.txt", **QUIET)


def test_only_rank_zero_takes_the_lock(tmp_path, monkeypatch):
    out = tmp_path / "r"
    with checkpoint.run_lock(out):
        monkeypatch.setenv("RANK", "1")  # a rank that writes nothing: it trains next to the holder
        assert train(config.load("tiny", ["train.max_steps=1", "train.eval_every=0"]), out, **QUIET)["step"] == 1
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(LmlabError, match=f"pid {os.getpid()}"):
            train(config.load("tiny", ["train.max_steps=1"]), out, **QUIET)
    assert not out.exists()  # nothing was written, and the lock went with the directory it made


def lmlab(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "lmlab.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def wait_for(predicate, proc, what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, f"the trainer exited before {what}: {proc.communicate()}"
        assert time.time() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.02)


def test_two_writers_one_refused_and_a_killed_holder_leaves_no_lock(tmp_path, capsys):
    run, lock = tmp_path / "run", tmp_path / "run" / checkpoint.LOCK
    steps = ["--set", "train.eval_every=0", "--set", "train.ckpt_every=3"]
    first = lmlab("train", "-c", "tiny", "-o", run, "--set", "train.max_steps=6", *steps)
    wait_for(lambda: lock.is_file() and lock.read_text().strip() == str(first.pid), first, "lock")
    assert main(["train", "-c", "tiny", "-o", str(run), "--set", "train.max_steps=6", *steps]) == 2
    assert first.poll() is None  # refused at once, while the holder still trains
    assert capsys.readouterr().err == (f"error: {run} is being written by another lmlab process (pid {first.pid}); "
                                       "wait for it to finish or choose another directory\n")
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert json.loads(out)["step"] == 6 and not lock.exists()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, 7))

    # no checkpoint after step 6 (ckpt_every=0): the resume after the kill starts from there
    holder = lmlab("train", "-o", run, "--resume", "--set", "train.max_steps=100000", *steps, "--set", "train.ckpt_every=0")
    wait_for(lambda: len((run / "metrics.jsonl").read_text().splitlines()) >= 8, holder, "step 8")
    holder.send_signal(signal.SIGKILL)
    holder.communicate()
    assert lock.read_text().strip() == str(holder.pid)  # the file stays behind, its flock went with the process
    assert main(["train", "-o", str(run), "--resume", "--set", "train.max_steps=9", *steps]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 9 and not lock.exists()
    steps_logged = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps_logged == list(range(1, 10))
