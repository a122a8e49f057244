"""The figure runner (``python -m madlib.figures``), the manifest, parameter checks and claim records.

Notebooks use :class:`FigureRecord` to write ``figures/<name>.png`` and ``figures/<name>.json``; a claim reads
one of four levels (:data:`LEVELS`) from its :class:`Precondition` s and, for a comparison, its interval
against a margin (:class:`Comparison`, intervals from :mod:`madlib.stats`).
"""

from madlib.figures.checks import first_last, mean_z_score, monotone, rounded, seed_spread, seeds_agree, with_spread
from madlib.figures.record import Claim, FigureRecord, call_with_params, count_levels, default_out_dir, write_claims_summary
from madlib.figures.verdicts import LEVELS, Comparison, Precondition, decide

__all__ = ["Claim", "Comparison", "FigureRecord", "LEVELS", "Precondition", "call_with_params", "count_levels", "decide",
           "default_out_dir", "first_last", "mean_z_score", "monotone", "rounded", "seed_spread", "seeds_agree", "with_spread",
           "write_claims_summary"]
