"""Hook names of a model: listing, glob matching, and errors that say what exists instead."""
from __future__ import annotations

import difflib
import re
from fnmatch import fnmatchcase

from ..errors import LmlabError
from ..model.block import MIXERS, layer_patterns
from ..model.hooks import HookPoint, hook_points

# activations whose position axis is not 1: the pattern and scores are [B, H, queries, keys];
# the SSM's carried state has no position; meta-attention runs over meta positions only
_QUERY_AXIS = (".attn.scores", ".attn.pattern")
_NO_POSITION = (".ssm.state",)


def hook_names(model) -> list[str]:
    """Every hook name of `model`, in the order of its modules (a cache is in firing order)."""
    return list(hook_points(model))


def position_axis(name: str) -> int | None:
    """The axis of `name`'s activation that runs over token positions (None: it has none)."""
    if name.startswith("meta.") or name.endswith(_NO_POSITION):
        return None
    return 2 if name.endswith(_QUERY_AXIS) else 1


def templates(names) -> list[str]:
    """Names with the block index written {i}: a short list of everything that exists."""
    seen = dict.fromkeys(re.sub(r"^blocks\.\d+\.", "blocks.{i}.", n) for n in names)
    return list(seen)


def _missing_sublayer(model, pattern: str) -> str | None:
    """For blocks.I.KIND... where block I has no sublayer KIND: a sentence naming its letters."""
    m = re.match(r"blocks\.(\d+)\.([a-z]+\d*)\.", pattern)
    if not m or not hasattr(model, "blocks") or int(m[1]) >= len(model.blocks):
        return None
    layer, sub = int(m[1]), m[2]
    kinds = {name: letter for letter, (name, _) in MIXERS.items()}
    if re.sub(r"\d+$", "", sub) not in kinds or sub in model.blocks[layer].sublayers:
        return None
    letters = layer_patterns(model.cfg)[layer]
    legend = ", ".join(f"{c} = {MIXERS[c][0]}" for c in dict.fromkeys(letters))
    having = [str(i) for i, b in enumerate(model.blocks) if sub in b.sublayers]
    where = f"blocks with {sub}: {', '.join(having)}" if having else f"no block has {sub}"
    return f"{pattern}: block {layer} has the pattern {letters!r} ({legend}), no {sub} sublayer; {where}"


def unknown(model, pattern: str, names) -> LmlabError:
    """The error for a name or glob that matches nothing: the layer's letters where a sublayer
    is missing, else the valid names closest first."""
    why = _missing_sublayer(model, pattern)
    if why:
        return LmlabError(why)
    forms = templates(names)
    asked = re.sub(r"^blocks\.\d+\.", "blocks.{i}.", pattern)
    ranked = sorted(forms, key=lambda f: -difflib.SequenceMatcher(None, asked, f).ratio())
    n_blocks = len(getattr(model, "blocks", ()))
    return LmlabError(f"no activation matches {pattern!r}; valid names, closest first "
                      f"({{i}} = 0..{n_blocks - 1}): {', '.join(ranked)}")


def resolve(model, patterns, points: dict | None = None) -> dict[str, HookPoint]:
    """{name: HookPoint} for names matching any of `patterns` (globs); each must match one.
    `points`: the model's hook_points, when the caller has them already."""
    points = hook_points(model) if points is None else points
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    chosen: dict[str, HookPoint] = {}
    for p in patterns:
        found = {n: m for n, m in points.items() if fnmatchcase(n, p)}
        if not found:
            raise unknown(model, p, points)
        chosen.update(found)
    return {n: chosen[n] for n in points if n in chosen}


# lmlab name (after 'blocks.{i}.') -> TransformerLens name (after 'blocks.{i}.'); docs/analysis.md
TRANSFORMER_LENS = {
    "resid_pre": "hook_resid_pre", "resid_mid": "hook_resid_mid", "resid_post": "hook_resid_post",
    "attn.norm.scale": "ln1.hook_scale", "attn.in": "ln1.hook_out",
    "attn.q": "attn.hook_q", "attn.k": "attn.hook_k", "attn.v": "attn.hook_v",
    "attn.q_rot": "attn.hook_rot_q", "attn.k_rot": "attn.hook_rot_k",
    "attn.scores": "attn.hook_attn_scores", "attn.pattern": "attn.hook_pattern", "attn.z": "attn.hook_z",
    "attn.head_out": "attn.hook_result", "attn.out": "hook_attn_out",
    "ffn.norm.scale": "ln2.hook_scale", "ffn.in": "ln2.hook_out",
    "ffn.pre": "mlp.hook_pre", "ffn.pre_linear": "mlp.hook_pre_linear", "ffn.post": "mlp.hook_post",
    "ffn.out": "hook_mlp_out",
}
TRANSFORMER_LENS_TOP = {"embed": "hook_embed", "pos_embed": "hook_pos_embed",
                        "final_norm.scale": "ln_final.hook_scale", "final": "ln_final.hook_out"}


def transformer_lens_name(name: str) -> str | None:
    """The TransformerLens hook name for an lmlab one, where an equivalent exists."""
    if name in TRANSFORMER_LENS_TOP:
        return TRANSFORMER_LENS_TOP[name]
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)", name)
    if m and m[2] in TRANSFORMER_LENS:
        return f"blocks.{m[1]}.{TRANSFORMER_LENS[m[2]]}"
    return None
