"""The config presets ship inside the package, so `-c tiny` works from an install outside a checkout."""
import importlib.resources
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lmlab import config

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {"tiny.toml", "demo.toml", "shakespeare-char.toml", "glyph.toml"}


def test_presets_are_package_resources_and_the_checkout_path_still_works():
    shipped = {p.name for p in (importlib.resources.files("lmlab") / "configs").iterdir() if p.name.endswith(".toml")}
    assert PRESETS <= shipped
    assert config.PRESET_DIR.parent == Path(config.__file__).resolve().parent  # inside the package
    assert {p.name for p in (ROOT / "configs").glob("*.toml")} == shipped  # docs' `-c configs/tiny.toml`
    assert config.load(str(ROOT / "configs" / "tiny.toml")) == config.load("tiny")


def test_a_built_wheel_carries_the_presets(tmp_path):
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(tmp_path)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("lmlab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"lmlab/configs/{p}" for p in PRESETS} <= names
    assert "lmlab/kernels/w8a8.cpp" in names  # built on first use from the installed source
