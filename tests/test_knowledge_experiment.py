"""`lmlab experiment knowledge --quick` end to end, and its page redrawn from the results alone."""
import json

from lmlab.cli import main
from lmlab.experiments import knowledge


def test_knowledge_quick(tmp_path):
    doc = tmp_path / "docs" / "knowledge.md"
    argv = ["experiment", "knowledge", "--quick", "--work", str(tmp_path / "runs"), "--doc", str(doc)]
    assert main(argv) == 0
    results = json.loads((tmp_path / "docs" / "knowledge-results.json").read_text())
    page = doc.read_text(encoding="utf-8")
    doc.unlink()
    assert main(argv + ["--render-only"]) == 0
    assert doc.read_text(encoding="utf-8") == page
    assert list(results["parts"]) == list(knowledge.PARTS)
    curv = results["parts"]["curvature"]["0"]
    assert [(e["rho"], e["mask"]) for e in curv["edits"]] == [(0.8, "curvature"), (0.8, "random")]
    assert curv["edits"][0]["kept_fraction"] == curv["edits"][1]["kept_fraction"]  # the control's size
    assert f"| 0.8 | random | {curv['edits'][1]['kept_fraction']:.3f} |" in page
    facts = results["parts"]["hallucination"]["0"]
    assert facts["facts"] == 8 and facts["monofact_rate"]["of_facts"] == 0.25
    probes = results["parts"]["probes"]["0"]
    assert probes["labels"] == list(knowledge.PROBE_LANGUAGES) and list(probes["accuracy"]) == ["0", "1"]
    assert "smoke run" in page and "--quick" in page
    for png in ("curvature", "reliability", "facts", "probes", "forgetting", "moral", "icl"):
        assert (tmp_path / "docs" / "img" / f"knowledge-{png}.png").read_bytes()[:4] == b"\x89PNG"
    forgetting = results["parts"]["forgetting"]["0"]
    assert list(forgetting["stages"]) == ["base", "solved", "forgot"] and forgetting["forget_task"] == "author"
    assert set(forgetting["stages"]["forgot"]) == {"language_test", "author_test", "shuffled_test", "forget_set_true",
                                                  "forget_set_random"}
    assert list(forgetting["probes"]["forgot"]["accuracy"]) == ["0", "1"]
    assert results["parts"]["moral"]["0"]["phrases"] == 80
    icl = results["parts"]["icl"]["0"]
    assert [r["n"] for r in icl["rows"]] == [1, 2, 4]
    claims = results["claims"]
    assert {c["paper"] for c in claims} >= {"Unforgettable Generalization in Language Models",
                                            "The Closeness of In-Context Learning and Weight Shifting for Softmax Regression"}
    verdicts = {"holds", "does not hold at this scale", "mixed", "not measurable here"}
    assert all(c["verdict"] in verdicts and c["number"] and c["command"].startswith("lmlab experiment knowledge")
               for c in claims)


def test_knowledge_keeps_the_parts_it_did_not_rerun(tmp_path):
    doc = tmp_path / "knowledge.md"
    base = ["experiment", "knowledge", "--quick", "--work", str(tmp_path / "runs"), "--doc", str(doc)]
    assert main(base + ["--parts", "icl"]) == 0
    first = json.loads((tmp_path / "knowledge-results.json").read_text())
    assert main(base + ["--parts", "moral"]) == 0
    results = json.loads((tmp_path / "knowledge-results.json").read_text())
    assert list(results["parts"]) == ["moral", "icl"] and results["parts"]["icl"] == first["parts"]["icl"]
    assert results["part_settings"]["icl"]["parts"] == "icl"


def test_knowledge_rejects_unknown_part(capsys):
    assert main(["experiment", "knowledge", "--parts", "curvature,nope"]) == 2
    assert "unknown part 'nope'" in capsys.readouterr().err


def _facts(recall20, hallucination, bound):
    return {"accuracy_by_repeats": {"1": 0.1, "2": 0.2, "5": 0.5, "20": recall20},
            "hallucination_rate": hallucination, "bound": bound, "bound_holds": hallucination >= bound}


def test_a_lower_bound_met_by_an_untrained_model_is_not_evidence():
    from lmlab.experiments.knowledge_report import hallucination_verdict

    assert hallucination_verdict({"0": _facts(0.56, 0.78, 0.12)})[0] == "not measurable here"
    assert hallucination_verdict({"0": _facts(0.95, 0.30, 0.25), "1": _facts(0.92, 0.28, 0.24)})[0] == "holds"
    assert hallucination_verdict({"0": _facts(0.95, 0.20, 0.25)})[0] == "does not hold at this scale"


def _forgetting(language_after):
    stages = {"solved": {"language_test": 0.8, "author_test": 0.45, "shuffled_test": 0.47, "forget_set_true": 0.59},
              "forgot": {"language_test": language_after, "author_test": 0.25, "shuffled_test": 0.48,
                         "forget_set_true": 0.25}}
    probes = {st: {"accuracy": {"0": 0.4}, "majority_baseline": 0.3} for st in ("solved", "forgot")}
    return {"1": {"forget_task": "author", "chance": {"language": 1 / 6, "author": 0.25, "shuffled": 0.5},
                  "stages": stages, "probes": probes}}


def test_forgetting_that_erases_the_other_tasks_too_is_not_task_forgetting():
    from lmlab.experiments.knowledge_report import forgetting_verdicts

    assert forgetting_verdicts(_forgetting(0.24))["generalises"][0] == "mixed"  # language lost ~88% of its gain
    assert forgetting_verdicts(_forgetting(0.78))["generalises"][0] == "holds"


def test_the_default_command_is_named_plainly_and_sweeps_the_issues_rho_range():
    from lmlab.experiments.knowledge_report import command, defaults

    s = defaults()
    assert command(s) == "lmlab experiment knowledge"
    assert {0.6, 0.7, 0.8} <= {float(r) for r in s["rhos"].split(",")}
    assert command({**s, "steps": 7}).endswith("--steps 7 --n-layers 2 --d-model 96 --rhos " + s["rhos"]
                                               + f" --planted {s['planted']} --planted-repeats {s['planted_repeats']} "
                                               f"--prose-chars {s['prose_chars']} --facts-per-repeat "
                                               f"{s['facts_per_repeat']} --curvature-tokens {s['curvature_tokens']}"
                                               + "".join(f" --{k.replace('_', '-')} {s[k]}" for k in (
                                                   "forget_task", "task_train", "task_test", "finetune_steps",
                                                   "forget_steps", "finetune_lr", "moral_splits", "moral_candidates",
                                                   "icl_steps", "icl_dim", "icl_classes", "icl_max_pairs")))


def _edit(rho, mask, exact, bpb):
    return {"rho": rho, "mask": mask, "kept_fraction": 0.5, "recitation": {"exact": exact}, "heldout_bpb": bpb}


def test_a_curvature_edit_no_gentler_than_a_random_mask_does_not_support_the_claim():
    from lmlab.experiments.knowledge_report import curvature_verdict

    def part(random_bpb):
        return {"0": {"before": {"recitation": {"exact": 0.8}, "heldout_bpb": 2.0},
                      "edits": [_edit(0.7, "curvature", 0.0, 2.2), _edit(0.7, "random", 0.0, random_bpb)]}}

    assert curvature_verdict(part(4.0)).startswith("**holds**")
    assert curvature_verdict(part(2.1)).startswith("**does not hold at this scale**")  # the random mask harmed less


def test_the_quick_run_records_its_wall_time_and_load(tmp_path):
    doc = tmp_path / "knowledge.md"
    assert main(["experiment", "knowledge", "--quick", "--parts", "icl", "--work", str(tmp_path / "runs"),
                 "--doc", str(doc)]) == 0
    t = json.loads((tmp_path / "knowledge-results.json").read_text())["timing"]
    assert set(t) == {"wall_s", "load_1min_start", "load_1min_end"} and t["wall_s"] > 0
    assert f"Wall time of the run that measured `icl`: {t['wall_s'] / 60:.1f} min" in doc.read_text(encoding="utf-8")
