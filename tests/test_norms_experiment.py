"""`lmlab experiment norms`: the quick run end to end, its page redrawn from the results alone, and the
verdict rules on hand-made numbers."""
import json
from pathlib import Path

from lmlab.cli import main
from lmlab.experiments import norms_report

COMMITTED = Path(__file__).parents[1] / "docs" / "experiments" / "norms-results.json"


def test_norms_quick_end_to_end(tmp_path):
    doc = tmp_path / "norms.md"
    argv = ["experiment", "norms", "--quick", "--doc", str(doc)]
    assert main(argv) == 0
    res = json.loads((tmp_path / "norms-results.json").read_text())
    first = doc.read_text()
    doc.unlink()
    assert main(argv + ["--render-only"]) == 0 and doc.read_text() == first
    assert res["settings"]["d_model"] == 64 and res["tokens"] == 2 * 16  # --quick's shape
    for measure in ("train_step", "forward"):
        assert set(res[measure]) == {"layernorm", "rmsnorm", "crmsnorm", "layernorm (again)"}
        assert res[measure]["layernorm"]["speedup_vs_layernorm"] == 1.0
    eq = res["equivalence"]
    assert set(eq) == {"rmsnorm", "crmsnorm"} and all(e["argmax_agree"] == 1.0 for e in eq.values())
    assert all(e["max_abs_logit_diff"] < 1e-5 for e in eq.values())  # the conversion is exact up to float32
    assert eq["crmsnorm"]["params"] < eq["rmsnorm"]["params"] < res["params_converted_from"]  # d-1 rows; no gains
    assert res["claims"] == norms_report.claims_of(res) and res["claims"][0]["verdict"] == "holds"
    assert [c["command"] for c in res["claims"]] == ["lmlab experiment norms --quick"] * 2
    assert f"| rmsnorm | {eq['rmsnorm']['params']:,} | {eq['rmsnorm']['max_abs_logit_diff']:.2e} |" in first


def _speeds(train: dict, forward: dict, control=(1.0, 1.0)) -> dict:
    """Results with the given speed-ups (the same by median and by fastest time)."""
    res = json.loads(COMMITTED.read_text())
    for measure, values in (("train_step", train), ("forward", forward)):
        values = {**values, "layernorm": 1.0, "layernorm (again)": control[measure == "forward"]}
        for name, x in values.items():
            res[measure][name].update(speedup_vs_layernorm=x, speedup_fastest=x)
    return res


def test_the_speed_verdict_needs_every_gain_to_beat_the_noise():
    verdict = lambda res: norms_report.claims_of(res)[1]["verdict"]
    assert verdict(_speeds({"rmsnorm": 1.05, "crmsnorm": 1.03}, {"rmsnorm": 1.04, "crmsnorm": 1.02})) == "holds"
    # the same gains, but the A/A control is 4% off: within the noise, so no gain counts
    assert verdict(_speeds({"rmsnorm": 1.03, "crmsnorm": 0.9}, {"rmsnorm": 1.0, "crmsnorm": 0.9}, (1.04, 1.0))) \
        == "does not hold at this scale"
    assert verdict(_speeds({"rmsnorm": 1.05, "crmsnorm": 0.9}, {"rmsnorm": 1.0, "crmsnorm": 1.0})) == "mixed"
    res = _speeds({"rmsnorm": 1.05, "crmsnorm": 1.05}, {"rmsnorm": 1.05, "crmsnorm": 1.05})
    res["forward"]["crmsnorm"]["speedup_fastest"] = 0.99  # faster by medians only: does not count
    assert verdict(res) == "mixed"


def test_the_equivalence_verdict_fails_on_a_changed_function():
    res = _speeds({"rmsnorm": 1.0, "crmsnorm": 1.0}, {"rmsnorm": 1.0, "crmsnorm": 1.0})
    assert norms_report.claims_of(res)[0]["verdict"] == "holds"
    res["equivalence"]["crmsnorm"]["argmax_agree"] = 0.99
    assert norms_report.claims_of(res)[0]["verdict"] == "does not hold at this scale"
