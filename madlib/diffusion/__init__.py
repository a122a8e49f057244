"""Diffusion machinery: schedules, denoiser networks, losses, samplers, guidance, training.

- ``schedules``: DDPM cosine schedule, EDM sigma steps
- ``networks``: EnsembleMLP (R independent MLPs as one batched computation)
- ``losses``: DDPM epsilon loss, EDM preconditioning and loss
- ``samplers``: ddpm_ancestral_sampler, edm_heun_sampler (SAMPLERS registry)
- ``guidance``: extrapolate / cfg / sims_score, weight schedules, lambda <-> w <-> CFG conversions
- ``training``: train_ensemble, finetune_copy (budgets in samples seen)
"""
