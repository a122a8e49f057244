"""Diffusion machinery: schedules, preconditioning, denoiser networks, losses, samplers, guidance, training.

- ``core``: the image core every image method calls: train (EDM U-Net or a given denoiser and loss, from
  scratch or a network, labels, sources, EMA, snapshots, checkpoints, disk cache), sample (seeded chunked
  latents, any sampler, guidance, one uint8 conversion), evaluate (HeldOutMetrics + class readouts)

- ``schedules``: DDPM cosine schedule, EDM sigma steps (Eq. 5)
- ``networks``: EnsembleMLP (R independent MLPs as one batched computation)
- ``unet``: UNet, the class-conditional image denoiser (one model, ``members = 1``), with an optional second
  label (CASD's data source) that has its own "no label" token; ``conditioning="scale_shift"`` (adaptive
  group norm) or ``"add"`` (default)
- ``batched``: BatchedUNet, R independent U-Nets as one vmapped computation (``members = R``)
- ``losses``: DDPM epsilon loss, EDM preconditioning (``EDMPrecond``, ``edm_denoise``) and loss
- ``samplers``: ddpm_ancestral_sampler (optionally with x0 clipped to the data range), edm_heun_sampler,
  euler_ancestral_sampler (SAMPLERS registry); every prediction goes through ``guidance.guided_prediction``
- ``guidance``: guided_prediction (the one composable piece), extrapolate / cfg / sims_score, cfg_predictors
  (conditional + unconditional predictions of one network), weight schedules (constant, ReDiFine's
  exponential decay, SIMS's interval), lambda <-> w <-> CFG conversions
- ``training``: train_ensemble (budget in samples seen, warm-up and cosine decay, EMA, checkpoints that resume
  with the same numbers), finetune_copy, ema_update
- ``config``: EDMConfig, the settings of an EDM-preconditioned U-Net, its optimiser and Heun sampler (SIMS's
  and CASD's settings extend it)
- ``cache``: cache_key / cached_fit, the atomic disk cache of trained networks keyed by their settings
- ``lora``: LoRA fine-tuning through peft (lora_copy, finetune_lora, merge_lora; optional extra ``lora``)
"""
