"""`lmlab experiment architectures`: a toy grid end to end, and the report's statistics and verdict rules."""
import argparse
import json
import math

import pytest
import torch

from lmlab.errors import LmlabError
from lmlab.experiments import architectures, architectures_report as report


def parse(argv):
    p = argparse.ArgumentParser()
    architectures.add_arguments(p)
    return p.parse_args(argv)


def test_toy_grid_writes_report_with_measured_rows_and_spread(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("Some words here, and more words there.\n" * 60, encoding="utf-8")
    args = parse(["--steps", "2", "--seeds", "2", "--width", "16", "--scale-widths", "", "--variants", "dense,lmu (LF)",
                  "--out", str(tmp_path / "runs"), "--docs", str(tmp_path / "docs"), "--gen-tokens", "5",
                  "--cost-context", "64", "--set", f"data.corpus={corpus}",
                  "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "model.context=16",
                  "--set", "train.eval_batches=1"])
    assert architectures.run(args) == 0
    md = (tmp_path / "docs" / "architectures.md").read_text()
    for name, slug in [("dense", "dense"), ("lmu (LF)", "lmu-LF")]:
        runs = [json.loads((tmp_path / "runs" / f"{slug}-d16-s{s}.json").read_text()) for s in (1337, 1338)]
        bpb = [r["val_bpb"] for r in runs]
        assert all(r["steps"] == 2 and r["params"] > 0 and r["gen_tok_per_s"] > 0 for r in runs)
        assert f"| {name} |" in md and f"{sum(bpb) / 2:.3f} ± {abs(bpb[0] - bpb[1]) / math.sqrt(2):.3f}" in md
    assert "--steps 2 --seeds 2 --width 16" in md and "| moe | `model.ffn=moe` | 0 | not run |" in md
    cost = json.loads((tmp_path / "runs" / "results.json").read_text())["decode_cost"]
    lmu = [c for c in cost if c["name"] == "lmu (LF)"]
    assert lmu[0]["flops_per_token"] == lmu[1]["flops_per_token"] and lmu[0]["state_bytes"] == lmu[1]["state_bytes"]
    for png in ("architectures_bpb.png", "architectures_loss.png"):
        assert (tmp_path / "docs" / png).read_bytes()[:4] == b"\x89PNG"
    args.seeds, args.reuse_only = 3, True  # a bigger grid from the finished runs only: nothing trained
    assert architectures.run(args) == 0
    md = (tmp_path / "docs" / "architectures.md").read_text()
    assert "4 of the 6 runs this command plans finished" in md and "--seeds 3" in md and "--reuse-only" in md


def test_unknown_variant_is_a_clear_error(tmp_path):
    with pytest.raises(LmlabError, match="unknown variant"):
        architectures.run(parse(["--variants", "dense,nope", "--out", str(tmp_path)]))


def test_grid_is_planned_seed_by_seed_with_scaling_rows_for_the_scaling_variants():
    plan = architectures.planned_runs(["dense", "moe", "lowrank"], 2, 64, [32])
    assert [(r["name"], r["width"], r["seed"]) for r in plan] == [
        ("dense", 64, 1337), ("moe", 64, 1337), ("lowrank", 64, 1337), ("dense", 32, 1337), ("lowrank", 32, 1337),
        ("dense", 64, 1338), ("moe", 64, 1338), ("lowrank", 64, 1338), ("dense", 32, 1338), ("lowrank", 32, 1338)]


def test_state_bytes_grow_with_the_kv_cache_and_stay_flat_for_the_lmu():
    from lmlab import config
    from lmlab.model.transformer import Transformer

    held = {}
    for pattern in ("AF", "LF"):
        model = Transformer(config.ModelConfig(n_layers=2, d_model=16, n_heads=4, context=32, vocab_size=11,
                                               pattern=pattern)).eval()
        for pos in (8, 16):
            cache = model.new_cache(32)
            with torch.no_grad():
                model(torch.zeros(1, pos, dtype=torch.long), cache=cache)
            held[pattern, pos] = architectures.state_bytes(cache)
    assert held["AF", 16] == 2 * held["AF", 8] == 2 * (2 * 2 * 8 * 16 * 4)  # k and v, 2 layers, 8 rows of d, fp32
    assert held["LF", 16] == held["LF", 8] > 0


def result(name, seed, bpb, width=64, flops=1e6, gen=100.0):
    return {"name": name, "width": width, "seed": seed, "val_bpb": bpb, "train_flops_per_token": flops / 1e3,
            "train_flops": flops, "train_tok_per_s": 1000.0, "gen_tok_per_s": gen, "rep3_greedy": 0.0,
            "rep3_sampled": 0.0, "wall_s": 1.0, "params": 10, "params_nonembed": 5}


def measured(results, cost=()):
    return {"settings": {"width": 64}, "results": results, "decode_cost": list(cost)}


EQUAL_COMPUTE, SLOPE, SELF_GUIDED, HYBRID, LMU, META = range(6)  # the claims' order


def verdicts(m):
    return [c["verdict"] for c in report.claims(m, report.groups(m["results"]), "s", "c")]


def test_groups_report_mean_and_sample_std_over_seeds():
    g = report.groups([result("dense", 1337, 2.0), result("dense", 1338, 2.2), result("moe", 1337, 2.5)])
    assert g["dense", 64]["n"] == 2 and g["dense", 64]["bpb"] == pytest.approx(2.1)
    assert g["dense", 64]["std"] == pytest.approx(math.sqrt(0.02)) and g["moe", 64]["std"] is None


def test_self_guided_verdict_follows_the_seed_spread():
    dense = [result("dense", 1337, 2.00), result("dense", 1338, 2.02)]
    plain = [result("lowrank", 1337, 2.10), result("lowrank", 1338, 2.12)]
    better = [result("lowrank+sgt", 1337, 2.00), result("lowrank+sgt", 1338, 2.02)]
    same = [result("lowrank+sgt", 1337, 2.11), result("lowrank+sgt", 1338, 2.12)]
    assert verdicts(measured(dense + plain + better))[SELF_GUIDED] == "holds"
    assert verdicts(measured(dense + plain + same))[SELF_GUIDED] == "does not hold at this scale"
    one_seed = verdicts(measured(dense[:1] + plain[:1] + better[:1]))
    assert one_seed[SELF_GUIDED] == "not measurable here"
    pooled = verdicts(measured(dense + plain[:1] + better[:1]))  # one-seed rows borrow dense's spread
    assert pooled[SELF_GUIDED] == "holds"


def test_equal_compute_and_slope_verdicts_read_dense_flops_curve():
    dense = [result("dense", s, b, w, f) for w, f, b in ((32, 1e6, 3.0), (64, 1e7, 2.5)) for s, b in
             ((1337, b), (1338, b + 0.01))]
    steep = [result("lowrank", s, b, w, f) for w, f, b in ((32, 5e5, 3.3), (64, 5e6, 2.5)) for s, b in
             ((1337, b), (1338, b + 0.01))]
    v = verdicts(measured(dense + steep))
    # lowrank at 5e6 FLOPs: 2.5 against dense's fit 3.0 - 0.5 * log10(5) = 2.65, at 5e5: 3.3 against 3.15
    assert v[EQUAL_COMPUTE] == "mixed"
    g = report.groups(dense + steep)
    assert report.scaling_fits(g)["lowrank"][1] == pytest.approx(-0.8)
    slope = [c for c in report.claims(measured(dense + steep), g, "s", "c") if "steeply" in c["claim"]][0]
    assert slope["verdict"] == "holds" and "lowrank -0.800" in slope["number"]


def test_lmu_verdict_needs_constant_cost_and_dense_quality():
    runs = [result(n, s, 2.0 + 0.01 * (s - 1337)) for n in ("dense", "lmu (LF)") for s in (1337, 1338)]
    flat = [{"name": n, "context": 64, "position": p, "flops_per_token": f, "state_bytes": b, "ms_per_token": 1.0}
            for n, p, f, b in (("dense", 4, 100, 10), ("dense", 47, 200, 90), ("lmu (LF)", 4, 50, 8),
                               ("lmu (LF)", 47, 50, 8))]
    assert verdicts(measured(runs, flat))[LMU] == "holds"
    worse = [dict(r, val_bpb=r["val_bpb"] + 0.5) if r["name"] == "lmu (LF)" else r for r in runs]
    assert verdicts(measured(worse, flat))[LMU] == "mixed"
    growing = [dict(c, flops_per_token=c["flops_per_token"] * c["position"]) for c in flat]
    assert verdicts(measured(runs, growing))[LMU] == "does not hold at this scale"


def toy(tmp_path, *extra):
    corpus = tmp_path / "c.txt"
    corpus.write_text("Some words here, and more words there.\n" * 60, encoding="utf-8")
    return parse(["--quick", "--out", str(tmp_path / "runs"), "--docs", str(tmp_path / "docs"),
                  "--set", f"data.corpus={corpus}", "--set", f"data.cache_dir={tmp_path / 'cache'}", *extra])


def rows(md):
    """The page's grid and scaling rows (the decoding-cost probe is re-measured on every run)."""
    return [line for line in md.splitlines() if line.startswith(("| dense |", "| lowrank |"))]


def test_a_lost_run_directory_is_reused_from_the_docs_json(tmp_path):
    import shutil

    args = toy(tmp_path, "--variants", "dense,lowrank")
    assert architectures.run(args) == 0
    page = tmp_path / "docs" / "architectures.md"
    before = rows(page.read_text())
    kept = json.loads((tmp_path / "docs" / "architectures-results.json").read_text())["runs"]
    assert sorted(r["key"] for r in kept) == ["dense-d16-s1337", "dense-d32-s1337", "lowrank-d16-s1337",
                                              "lowrank-d32-s1337"]
    assert all("curve" not in r and r["evals"] and r["sample"] for r in kept)  # the records, less the bulky curve
    shutil.rmtree(tmp_path / "runs")
    args.reuse_only = True  # trains nothing: every run must come from the docs JSON's records
    assert architectures.run(args) == 0
    md = page.read_text()
    assert len(before) == 4 and rows(md) == before and "4 of the 4 runs this command plans finished" in md
    assert "- **lowrank** (greedy)" in md and "†" not in md


def test_rows_not_trained_again_are_carried_from_the_previous_page(tmp_path):
    args = toy(tmp_path, "--variants", "dense,lowrank")
    assert architectures.run(args) == 0
    docs = tmp_path / "docs" / "architectures-results.json"
    first = {(gr["name"], gr["width"]): gr["bpb"] for gr in json.loads(docs.read_text())["groups"]}
    args = toy(tmp_path, "--variants", "lowrank")  # another subset of the grid, into the same docs
    assert architectures.run(args) == 0
    md = (tmp_path / "docs" / "architectures.md").read_text()
    saved = json.loads(docs.read_text())
    carried = {(gr["name"], gr["width"]): gr for gr in saved["groups"] if "carried" in gr}
    assert set(carried) == {("dense", 16), ("dense", 32)} and carried["dense", 16]["bpb"] == first["dense", 16]
    assert saved["runs_carried"] == 2 and len(saved["runs"]) == 4  # the union: nothing dropped
    assert f"| dense | GELU MLP, `AF` | 1 † | {first['dense', 16]:.3f} (1 seed) |" in md
    assert "and 2 more are carried from an earlier one (rows marked †, below)" in md and "- **dense** (greedy)" in md
    # a page from before the per-run records were kept: its aggregates are carried, no samples
    legacy = dict(saved, groups=[{k: v for k, v in gr.items() if k != "carried"} for gr in saved["groups"]])
    del legacy["runs"]
    docs.write_text(json.dumps(legacy))
    assert architectures.run(args) == 0
    md = (tmp_path / "docs" / "architectures.md").read_text()
    assert f"carried from {docs}" in md and "only the per-row aggregates were kept" in md
    assert f"| dense | GELU MLP, `AF` | 1 † | {first['dense', 16]:.3f} (1 seed) |" in md
    assert "- **dense** (greedy)" not in md and "- **lowrank** (greedy)" in md
    equal_compute = json.loads(docs.read_text())["claims"][EQUAL_COMPUTE]
    assert equal_compute["number"].startswith("lowrank d16")  # read off the carried dense rows' FLOPs curve


def test_hybrid_speed_is_not_compared_with_a_dense_row_from_another_run():
    dense = [result("dense", s, 2.0 + 0.01 * (s - 1337), gen=100.0) for s in (1337, 1338)]
    hybrid = [result("hybrid (AMF MF)", s, 2.0 + 0.01 * (s - 1337), gen=200.0) for s in (1337, 1338)]
    assert verdicts(measured(dense + hybrid))[HYBRID] == "holds"
    old = dict(report.groups(hybrid)["hybrid (AMF MF)", 64], name="hybrid (AMF MF)", width=64, carried="commit abc")
    m = dict(measured(dense), carried={"groups": [old]})
    claim = report.claims(m, report.with_carried(m["results"], m["carried"]), "s", "c")[HYBRID]
    assert claim["verdict"] == "not measurable here" and "commit abc vs this run" in claim["number"]
