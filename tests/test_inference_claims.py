"""The LM-Infinite passkey verdict of `lmlab experiment inference`: the tasks experiment's rule, one seed."""
from lmlab.experiments.inference_report import _passkey_claim

CTX = 128


def results(at_1x: float, beyond: dict, n: int = 20) -> dict:
    """Passkey rows: vanilla and LM-Infinite at 1x with `at_1x`, beyond it {(method, depth): accuracy}."""
    rows = [{"method": m, "length": CTX, "depth": d, "n": n, "accuracy": at_1x, "digit_accuracy": at_1x}
            for m in ("vanilla", "lminfinite") for d in (0.5, 1.0)]
    rows += [{"method": m, "length": L, "depth": d, "n": n, "accuracy": a, "digit_accuracy": a}
             for (m, d), a in beyond.items() for L in (2 * CTX, 4 * CTX)]
    return {"passkey": rows, "passkey_model": {"context": CTX, "layers": 2, "d_model": 128, "params": 1, "steps": 1}}


def verdict(at_1x, beyond) -> str:
    return _passkey_claim(results(at_1x, beyond), "cmd")["verdict"]


def test_no_verdict_on_beyond_length_numbers_while_the_model_cannot_retrieve_at_1x():
    strong = {("vanilla", 0.5): 0.0, ("vanilla", 1.0): 0.0, ("lminfinite", 0.5): 0.9, ("lminfinite", 1.0): 0.9}
    assert verdict(0.45, strong) == "not measurable here"
    assert verdict(0.6, strong) == "holds"


def test_a_gain_at_only_some_depths_is_mixed_and_a_small_one_does_not_count():
    assert verdict(0.9, {("vanilla", 0.5): 0.0, ("vanilla", 1.0): 0.0,
                         ("lminfinite", 0.5): 0.0, ("lminfinite", 1.0): 0.8}) == "mixed"
    # 0.10 vs 0.05 on 40 prompts is within two standard errors: no gain anywhere
    assert verdict(0.9, {("vanilla", 0.5): 0.05, ("vanilla", 1.0): 0.05,
                         ("lminfinite", 0.5): 0.10, ("lminfinite", 1.0): 0.10}) == "does not hold at this scale"
