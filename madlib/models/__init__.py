"""Model families the loop engine fits and samples (see :class:`madlib.loops.ModelFamily`).

- :class:`madlib.models.gaussian.GaussianFamily`: MAD's multivariate Gaussian (Sec. 3.1).
"""
