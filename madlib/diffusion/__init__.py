"""Diffusion machinery: schedules, denoiser networks, losses, samplers, guidance, training.

- ``schedules``: DDPM cosine schedule, EDM sigma steps
- ``networks``: EnsembleMLP (R independent MLPs as one batched computation)
- ``unet``: UNet, the class-conditional image denoiser of the MNIST experiments (one model, ``members = 1``)
- ``losses``: DDPM epsilon loss, EDM preconditioning and loss
- ``samplers``: ddpm_ancestral_sampler (optionally with x0 clipped to the data range), edm_heun_sampler
  (SAMPLERS registry)
- ``guidance``: extrapolate / cfg / sims_score, cfg_predictors (conditional + unconditional predictions of one
  network), weight schedules, lambda <-> w <-> CFG conversions
- ``training``: train_ensemble, finetune_copy (budgets in samples seen), ema_update
"""
