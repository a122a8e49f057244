"""One module per paper protocol, built on :mod:`madlib.loops`, :mod:`madlib.models` and :mod:`madlib.diffusion`,
so that a reader holding a paper finds its algorithm in one file.

- :mod:`madlib.methods.mad_fresh`: MAD Sec. 5 / App. G, the Gaussian fresh-data loop (its limit, the effective
  sample size n_e, the admissible region, the growing dataset).
- :mod:`madlib.methods.sims`: SIMS Algorithm 1 on images (base model, synthetic set, auxiliary fine-tune with snapshots
  along B, Eq. 5 with Heun), the paired (B, w) grid, selection on one set of latents and report on another, the
  group-shifted auxiliary set (Sec. 4.3) and the decoder-only auxiliary model with a shared encoder (App. A).
- :mod:`madlib.methods.redifine`: ReDiFine Sec. 3-5, the Chain of Diffusion (M_0 pretraining, fine-tuning from M_0,
  one image per prompt, CFG schedules, collapse rate), its diagnostics and the trait fit to measured spectra.
- :mod:`madlib.methods.casd`: CASD Algorithm 1-2, one EDM denoiser conditioned on the data source (real 0,
  synthetic 1) and sampled with label 0, against DM and SDA; the project's synthetic sources and their disk cache.

The image protocols (SIMS Algorithm 1, CASD Algorithm 1-2, ReDiFine's chain) join here as ``sims.py``,
``casd.py`` and ``redifine.py`` (issues 14-16).
"""
