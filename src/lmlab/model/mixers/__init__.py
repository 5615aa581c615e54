"""Sequence mixers besides attention, registered as block-pattern letters.

M = selective state-space mixer (ssm.py), L = Legendre Memory Unit (lmu.py). Each takes
(x, rope=None, cache=None, start_pos=0) like attention and keeps its recurrent state in its
own cache dict, so `model.pattern = "AMF MF AMF"` mixes them freely with attention.
"""
from ..block import MIXERS
from .lmu import LMUMixer
from .ssm import SelectiveSSM

MIXERS.register("M", ("ssm", lambda cfg, layer: SelectiveSSM(cfg)))
MIXERS.register("L", ("lmu", lambda cfg, layer: LMUMixer(cfg)))
