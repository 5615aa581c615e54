"""The claims of `lmlab experiment objectives`: decided from per-seed numbers by the no-overlap rule."""
from lmlab.experiments import objectives_report as rep
from lmlab.experiments.claims import FIELDS, paper_key


def fusion(first_pass: list[float], wers: dict) -> dict:
    """A fusion part with one run per seed: test WER per LM at its chosen W, B."""
    runs = {}
    for i, fp in enumerate(first_pass):
        runs[str(i)] = {"first_pass_wer": {"test": fp}, "settings": {"lists": 10, "steps": 5, "text_fractions": [0.1]},
                        "lms": {name: {"test_wer_at_best": w[i], "params": 100 if name.startswith("LM") else None}
                                for name, w in wers.items()}}
    return {"runs": runs, "command": "lmlab experiment objectives --parts fusion"}


def test_rescoring_holds_only_when_every_lm_beats_the_first_pass_in_every_seed():
    res = fusion([0.20, 0.22], {"LM 2x96": [0.15, 0.18], "char 5-gram": [0.10, 0.12],
                                "LM 2x96, 10% of the text": [0.19, 0.21], "char 5-gram, 10% of the text": [0.17, 0.20]})
    helps, ngram, low = rep.fusion_claims(res)
    assert helps["verdict"] == "holds"
    assert ngram["verdict"] == "holds"  # n-gram gains 0.10 in both seeds, the LM 0.05 and 0.04
    assert low["verdict"] == "does not hold at this scale"  # less text: smaller gain for both kinds, every seed
    res = fusion([0.20, 0.22], {"LM 2x96": [0.15, 0.23], "char 5-gram": [0.10, 0.12],
                                "LM 2x96, 10% of the text": [0.10, 0.10], "char 5-gram, 10% of the text": [0.17, 0.20]})
    helps, ngram, low = rep.fusion_claims(res)
    assert helps["verdict"] == "mixed"  # the LM is worse than the first pass in the second seed
    assert low["verdict"] == "mixed"  # more gain with less text for the LM, less for the n-gram
    assert "lower in every seed with char 5-gram, higher with none" in helps["why"]


def test_every_claim_has_the_index_fields_and_a_paper_of_the_seed_list():
    claims = rep.claims({"fusion": fusion([0.2], {"LM 2x96": [0.1], "char 5-gram": [0.1],
                                                  "LM 2x96, 10% of the text": [0.1],
                                                  "char 5-gram, 10% of the text": [0.1]})})
    assert all(set(c) == set(FIELDS) for c in claims)
    assert {paper_key(c["paper"]) for c in claims} == {"whisper-lm", "making the most of your model"}
    assert claims[-1]["verdict"] == "not measurable here"


def test_pm_is_the_mean_and_half_the_range():
    assert rep.pm([0.1, 0.3]) == "0.200 ±0.100"
    assert rep.pm([2.0], 1) == "2.0"
    assert rep.below([1, 2], [3, 4]) and not rep.below([1, 3], [2, 4])
