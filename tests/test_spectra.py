"""ReDiFine's high-frequency phenotype (App. D.2.1, Eq. 13-14; madlib.metrics.spectra and
madlib.methods.redifine.phenotype) against a hand-written numpy FFT and the closed form of constructed images."""

import numpy as np
import pytest
import torch

from madlib.methods.redifine import HF_CUTOFF, phenotype
from madlib.metrics.spectra import high_frequency_power


def _hand_power_above(image: np.ndarray, tau: float) -> tuple[float, float]:
    """(power above tau, total power) of one [H, W] image: numpy's orthonormal FFT, shifted, r = sqrt((u/M)^2 + (v/N)^2)."""
    H, W = image.shape
    F = np.fft.fftshift(np.fft.fft2(image) / np.sqrt(H * W))
    P = np.abs(F) ** 2
    u = np.fft.fftshift(np.fft.fftfreq(H))[:, None]
    v = np.fft.fftshift(np.fft.fftfreq(W))[None, :]
    r = np.sqrt(u**2 + v**2)
    return float(P[r > tau].sum()), float(P.sum())


def _checker_plus(a: float, c: float, b: float = 0.0, size: int = 8) -> np.ndarray:
    """a + c (-1)^(x + y) + b cos(2 pi x / size): a constant (DC), a checkerboard (the Nyquist corner, r = 0.71) and a
    low-frequency cosine along the columns (r = 1 / size)."""
    y, x = np.mgrid[:size, :size]
    return a + c * (-1.0) ** (x + y) + b * np.cos(2 * np.pi * x / size)


def test_absolute_phenotype_is_the_power_above_a_quarter_cycle_per_pixel():
    a, c, b = 0.4, 0.25, 0.2
    image = _checker_plus(a, c, b)
    above, total = _hand_power_above(image, HF_CUTOFF)
    # closed form (orthonormal DFT of 64 pixels): DC 64 a^2, the corner 64 c^2, the cosine 16 b^2 at (0, +-1)
    assert above == pytest.approx(64 * c**2)
    assert total == pytest.approx(64 * a**2 + 64 * c**2 + 32 * b**2) == pytest.approx(float((image**2).sum()))
    batch = torch.as_tensor(np.stack([image, _checker_plus(0.1, 0.0, 0.3)]))[:, None]  # [2, 1, 8, 8]
    np.testing.assert_allclose(phenotype(batch), [64 * c**2, 0.0], atol=1e-12)  # the cosine is below r = 0.25
    np.testing.assert_allclose(high_frequency_power(batch, tau=0.25).numpy(), phenotype(batch))
    # the relative phenotype (tau = 0.02): every non-DC frequency over the total, here 1 - DC share
    rel_above, rel_total = _hand_power_above(image, 0.02)
    assert phenotype(batch, "relative")[0] == pytest.approx(rel_above / rel_total)
    assert rel_above / rel_total == pytest.approx(1 - 64 * a**2 / total)


def test_phenotype_of_uint8_images_and_a_brighter_copy():
    rng = np.random.default_rng(0)
    images = torch.as_tensor(rng.integers(0, 200, (5, 1, 14, 14)), dtype=torch.uint8)
    expected = [_hand_power_above(im[0].numpy() / 255.0, 0.25)[0] for im in images]
    np.testing.assert_allclose(phenotype(images), expected, rtol=1e-10)
    # a constant added to every pixel is DC only: the absolute phenotype keeps, the relative one falls
    brighter = images + 50
    np.testing.assert_allclose(phenotype(brighter), phenotype(images), rtol=1e-9)
    assert np.all(phenotype(brighter, "relative") < phenotype(images, "relative"))
    with pytest.raises(ValueError, match="kind must be one of"):
        phenotype(images, "squared")
