"""Closed forms and simulators that need only numpy and scipy.

- :mod:`madlib.theory.gaussian`: MAD's Gaussian loop (Sec. 3.1, App. A), W2 between Gaussians.
- :mod:`madlib.theory.traits`: ReDiFine's quantitative-trait truncation model (Sec. 4, Thm. 1, App. D): closed forms, recursion, Monte Carlo population.
- :mod:`madlib.theory.fresh`: the Gaussian fresh-data loop (Sec. 5, App. G): its limit, effective sample size n_e, admissible threshold.
"""
