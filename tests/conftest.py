import os
from pathlib import Path

# Read once when torch loads: idle OpenMP threads sleep instead of spinning, so a test process
# sharing two cores with others does not stall (docs/performance.md, A shared CPU).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Token caches go to a per-session temp dir; tests never touch ~/.cache or the network."""
    os.environ["LMLAB_CACHE"] = str(tmp_path_factory.mktemp("lmlab-cache"))
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"shared test data expected at {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run directory with a tiny char model trained for 20 steps on tinyshakespeare."""
    from lmlab import config
    from lmlab.train.loop import train

    out = tmp_path_factory.mktemp("tiny-run")
    train(config.load("tiny"), out, progress=False, echo=lambda *a: None)
    return out
