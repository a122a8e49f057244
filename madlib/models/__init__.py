"""Model families the loop engine fits and samples (see :class:`madlib.loops.ModelFamily`).

- :class:`madlib.models.gaussian.GaussianFamily`: MAD's multivariate Gaussian (Sec. 3.1).
- :class:`madlib.models.mixture.MixtureFamily`: Gaussian mixtures fitted by batched EM, lambda scales component covariances (App. B.2).
- :class:`madlib.models.flow.FlowFamily`: batched RealNVP flows (torch), lambda = latent variance (App. B.4).
- :class:`madlib.models.images.ImageDiffusionFamily`: class-conditional image DDPMs (U-Net), lambda = 1 / (1 + w)
  through classifier-free guidance (Sec. 3.2-4, MAD-9..12).
"""
