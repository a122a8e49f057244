"""Closed forms and simulators that need only numpy and scipy (nothing here imports torch or the loop engine).

- :mod:`madlib.theory.gaussian`: MAD's Gaussian loop (Sec. 3.1, App. A), W2 between Gaussians.
- :mod:`madlib.theory.traits`: ReDiFine's quantitative-trait truncation model (Sec. 4, Thm. 1, App. D): closed forms, recursion, Monte Carlo population.

MAD's Gaussian fresh-data loop (Sec. 5), which runs on the loop engine, lives in :mod:`madlib.methods.mad_fresh`.
"""
