"""One registry per kind of variant: registration, lookup errors, and complete as soon as imported."""
import json
import subprocess
import sys

import pytest

from lmlab.errors import LmlabError
from lmlab.registry import Registry


def test_register_get_names_and_a_clear_error():
    reg = Registry("model.thing")
    reg.register("b", 2)

    @reg.register("a")
    class A:
        pass

    assert reg.get("a") is A and reg["b"] == 2 and reg.names() == ["a", "b"] and "a" in reg and "c" not in reg
    for kind in (LmlabError, ValueError):  # a user mistake, and what model code raises for bad configs
        with pytest.raises(kind, match=r"^unknown model.thing 'c'; valid kinds: a, b$"):
            reg.get("c")
    with pytest.raises(ValueError, match="twice"):
        reg.register("a", 3)


def test_every_kind_is_registered_once_its_package_is_imported():
    # a fresh process: nothing has looked a kind up yet, so no lazy loading could have filled them
    code = ("import json; from lmlab.tokenizers import REGISTRY; from lmlab.embeddings import EMBEDDINGS; "
            "from lmlab.model.ffn import FFNS; from lmlab.model.block import MIXERS; "
            "print(json.dumps([sorted(r) for r in (REGISTRY, EMBEDDINGS, FFNS, MIXERS)]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [["amino", "bpe", "byte", "char", "superbpe", "unicode", "unicode-bmp"],
                               ["binary", "gaussian", "glyph", "trainable"],
                               ["blockdense", "blockshuffle", "lowrank", "mlp", "moe", "swiglu"],
                               ["A", "F", "L", "M"]]
