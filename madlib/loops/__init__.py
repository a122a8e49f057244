"""The self-consuming loop engine (MAD Sec. 2.2): fully synthetic, augmentation and fresh-data loops."""

from madlib.loops.engine import LOOP_KINDS, LoopResult, LoopSpec, ModelFamily, run_loop
from madlib.loops.ratios import bootstrap_runs, madness_ratios

__all__ = ["LOOP_KINDS", "LoopResult", "LoopSpec", "ModelFamily", "bootstrap_runs", "madness_ratios", "run_loop"]
