"""The figure runner (``python -m madlib.figures``), the manifest, parameter checks and claim records.

Notebooks use :class:`FigureRecord` to write ``figures/<name>.png`` and ``figures/<name>.json``.
"""

from madlib.figures.checks import mean_z_score, monotone, seed_spread, seeds_agree
from madlib.figures.record import Claim, FigureRecord, default_out_dir, write_claims_summary

__all__ = ["Claim", "FigureRecord", "default_out_dir", "mean_z_score", "monotone", "seed_spread", "seeds_agree",
           "write_claims_summary"]
