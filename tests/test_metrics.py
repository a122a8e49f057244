"""Metrics against slow, obviously correct references and against cases with known answers."""

import numpy as np
import pytest
import torch
from scipy import linalg

from madlib.data import grid_mixture
from madlib.metrics import (collapse_rate, density_coverage, expected_coverage, frechet_distance, high_frequency_power, memorization,
                            mode_coverage, nearest_ssim, power_spectrum, precision_recall, radial_power_spectrum, ssim,
                            w2_empirical, w2_gaussian)


# --- slow references (python loops over numpy) ---------------------------------------------------------

def _dist(a, b):
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def _radius(x, k):
    """k-th nearest neighbour distance, the point itself excluded, one point at a time."""
    out = []
    for i in range(len(x)):
        d = sorted(float(np.linalg.norm(x[i] - x[j])) for j in range(len(x)) if j != i)
        out.append(d[k - 1])
    return np.array(out)


def _reference_prdc(real, fake, k):
    r_real, r_fake = _radius(real, k), _radius(fake, k)
    d = _dist(fake, real)  # [M, N]
    precision = np.mean([any(d[j, i] <= r_real[i] for i in range(len(real))) for j in range(len(fake))])
    recall = np.mean([any(d[j, i] <= r_fake[j] for j in range(len(fake))) for i in range(len(real))])
    density = sum(d[j, i] <= r_real[i] for j in range(len(fake)) for i in range(len(real))) / (k * len(fake))
    coverage = np.mean([min(d[:, i]) <= r_real[i] for i in range(len(real))])
    return precision, recall, density, coverage


@pytest.mark.parametrize("k", [1, 3, 5])
def test_prdc_matches_slow_reference(k):
    rng = np.random.default_rng(k)
    real = rng.standard_normal((70, 4))
    fake = 0.7 * rng.standard_normal((55, 4)) + 0.5
    p, r, d, c = _reference_prdc(real, fake, k)
    pr = precision_recall(torch.from_numpy(real), torch.from_numpy(fake), k=k)
    dc = density_coverage(torch.from_numpy(real), torch.from_numpy(fake), k=k)
    assert (pr.precision, pr.recall) == pytest.approx((p, r), abs=1e-12)
    assert (dc.density, dc.coverage) == pytest.approx((d, c), abs=1e-12)
    assert (pr.n_real, pr.n_fake, pr.k) == (70, 55, k)
    precision, recall = pr  # unpacks as a pair
    assert (precision, recall) == (pr.precision, pr.recall)


def test_prdc_chunking_does_not_change_the_answer(monkeypatch):
    import madlib.metrics.prdc as prdc

    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(300, 8, generator=g), torch.randn(200, 8, generator=g) + 0.3
    full = (precision_recall(real, fake), density_coverage(real, fake))
    monkeypatch.setattr(prdc, "_CHUNK_ELEMENTS", 1000)  # a few rows per chunk
    assert (precision_recall(real, fake), density_coverage(real, fake)) == full


def test_prdc_known_answers():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(400, 16, generator=g)
    pr, dc = precision_recall(x, x.clone()), density_coverage(x, x.clone())
    assert pr.precision == 1.0 and pr.recall == 1.0 and dc.coverage == 1.0
    assert dc.density == pytest.approx(6 / 5)  # each closed ball holds its centre and its k = 5 neighbours
    # two independent samples of one distribution: density about 1
    y = torch.randn(4000, 2, generator=g)
    z = torch.randn(4000, 2, generator=g)
    assert density_coverage(y, z).density == pytest.approx(1.0, abs=0.05)
    # disjoint, far apart
    far = x + 1000.0
    assert tuple(precision_recall(x, far)) == (0.0, 0.0) and tuple(density_coverage(x, far)) == (0.0, 0.0)


def test_collapsed_sets_are_inside_their_own_closed_balls():
    """prdc's strict '<' trap: radii 0 would make every ball empty; with '<=' a set covers itself."""
    x = torch.ones(20, 3)
    assert tuple(precision_recall(x, x)) == (1.0, 1.0)
    assert density_coverage(x, x).coverage == 1.0


def test_prdc_argument_errors():
    x = torch.randn(5, 2)
    with pytest.raises(ValueError, match="k must be smaller"):
        precision_recall(x, x, k=5)
    with pytest.raises(ValueError, match="same dimension"):
        density_coverage(x, torch.randn(5, 3), k=2)
    with pytest.raises(ValueError, match="real_features must be a \\[n, d\\]"):
        precision_recall(torch.randn(5), x, k=2)


# --- Fréchet distance and W2 ------------------------------------------------------------------------

def _scipy_frechet(a, b):
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s_a @ s_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean))


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 10)) @ rng.standard_normal((10, 10))
    b = rng.standard_normal((300, 10)) * 1.5 + 0.2
    fd = frechet_distance(torch.from_numpy(a), torch.from_numpy(b))
    assert fd.value == pytest.approx(_scipy_frechet(a, b), rel=1e-8)
    assert (fd.n_a, fd.n_b, fd.dim) == (500, 300, 10) and float(fd) == fd.value
    assert frechet_distance(a, a).value == pytest.approx(0.0, abs=1e-8)


def test_w2_empirical_approaches_the_gaussian_closed_form():
    mu1, cov1 = np.zeros(2), np.array([[2.0, 1.0], [1.0, 2.0]])
    mu2, cov2 = np.array([3.0, -1.0]), np.array([[1.0, -0.3], [-0.3, 0.5]])
    exact = float(w2_gaussian(mu1, cov1, mu2, cov2))
    g = torch.Generator().manual_seed(0)
    n = 1500
    x = torch.from_numpy(mu1) + torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.from_numpy(np.linalg.cholesky(cov1)).T
    y = torch.from_numpy(mu2) + torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.from_numpy(np.linalg.cholesky(cov2)).T
    w = w2_empirical(x, y)
    assert (w.n_a, w.n_b, w.squared) == (n, n, False)
    # the empirical W2 of finite samples is biased upward by O(n^-1/2) in 2D
    assert exact <= w.value <= exact + 0.15
    assert w2_empirical(x, y, squared=True).value == pytest.approx(w.value**2)
    assert w2_empirical(x, x).value == pytest.approx(0.0, abs=1e-7)


def test_collapse_rate_is_redifine_eq3():
    assert collapse_rate([10.0, 12.0, 15.0, 20.0, 22.0, 30.0]) == pytest.approx((30 - 10) / 5)
    with pytest.raises(ValueError, match="K >= 2"):
        collapse_rate([3.0])


# --- spectra -----------------------------------------------------------------------------------------

def test_white_noise_spectrum_is_flat():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(400, 1, 32, 32, generator=g, dtype=torch.float64)
    p = power_spectrum(noise).mean(0)
    assert float(p.mean()) == pytest.approx(1.0, rel=0.02)  # orthonormal DFT: E|F|^2 = sigma^2
    r, radial = radial_power_spectrum(noise)
    profile = radial.mean(0)
    assert torch.all((profile[~profile.isnan()] - 1.0).abs() < 0.1)
    assert r.shape == (16,)


def test_blurring_removes_high_frequencies():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 1, 28, 28, generator=g, dtype=torch.float64)
    k = torch.ones(1, 1, 3, 3, dtype=torch.float64) / 9
    blurred = torch.nn.functional.conv2d(x, k, padding=1)
    s, sb = high_frequency_power(x), high_frequency_power(blurred)
    assert torch.all(sb < 0.5 * s)
    _, rx = radial_power_spectrum(x)
    _, rb = radial_power_spectrum(blurred)
    assert torch.all(rb[:, -3:] < 0.2 * rx[:, -3:])


def test_high_frequency_power_matches_the_formula_by_loops():
    """ReDiFine Eq. 14 on the shifted spectrum, written with explicit loops and signed frequencies."""
    g = torch.Generator().manual_seed(2)
    img = torch.rand(6, 10, generator=g, dtype=torch.float64)
    M, N = img.shape
    F = np.fft.fft2(img.numpy(), norm="ortho")
    tau = 0.12
    s = 0.0
    for u in range(M):
        for v in range(N):
            us, vs = (u if u < M - M // 2 else u - M), (v if v < N - N // 2 else v - N)  # signed
            if np.sqrt((us / M) ** 2 + (vs / N) ** 2) > tau:
                s += abs(F[u, v]) ** 2
    assert float(high_frequency_power(img, tau=tau)) == pytest.approx(s, rel=1e-10)
    total = float((img**2).sum())  # Parseval
    assert float(high_frequency_power(img, tau=0.0, relative=True)) == pytest.approx(1 - float(img.mean()) ** 2 * M * N / total)


# --- SSIM and memorisation --------------------------------------------------------------------------

def test_ssim_known_values():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 28, 28, generator=g, dtype=torch.float64)
    assert torch.allclose(ssim(x, x), torch.ones(3, dtype=torch.float64))
    assert torch.all(ssim(x, 1 - x) < 0)  # inverted contrast
    noisy = (x + 0.2 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    assert torch.all(ssim(x, noisy) < 0.9) and torch.all(ssim(x, noisy) > 0.0)
    assert torch.allclose(ssim(x, noisy), ssim(noisy, x))  # symmetric
    assert ssim(torch.rand(2, 1, 8, 8, generator=g), torch.rand(2, 1, 8, 8, generator=g)).shape == (2,)


def test_ssim_matches_a_loop_reference():
    """One 'valid' window position at a time, Gaussian weights, Wang et al. 2004 Eq. 13."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1, 1, 13, 12, generator=g, dtype=torch.float64)
    y = (0.5 * x + 0.5 * torch.rand(1, 1, 13, 12, generator=g, dtype=torch.float64))
    t = np.arange(11) - 5
    w1 = np.exp(-0.5 * (t / 1.5) ** 2)
    w = np.outer(w1, w1) / w1.sum() ** 2
    a, b = x[0, 0].numpy(), y[0, 0].numpy()
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for i in range(13 - 10):
        for j in range(12 - 10):
            pa, pb = a[i:i + 11, j:j + 11], b[i:i + 11, j:j + 11]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va, vb = (w * pa**2).sum() - ma**2, (w * pb**2).sum() - mb**2
            cab = (w * pa * pb).sum() - ma * mb
            vals.append((2 * ma * mb + c1) * (2 * cab + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    assert float(ssim(x, y)) == pytest.approx(np.mean(vals), rel=1e-10)


def test_memorization_finds_copies():
    g = torch.Generator().manual_seed(4)
    train = torch.rand(50, 1, 16, 16, generator=g, dtype=torch.float64)
    fresh = torch.rand(10, 1, 16, 16, generator=g, dtype=torch.float64)
    gen = torch.cat([train[[3, 17, 42]], fresh])
    m = memorization(gen, train)
    assert m.nearest_index[:3].tolist() == [3, 17, 42]
    assert np.allclose(m.nearest_ssim[:3], 1.0) and np.all(m.nearest_ssim[3:] < 0.5)
    assert m.near_copy_share == pytest.approx(3 / 13) and (m.n_generated, m.n_training) == (13, 50)
    exact, _ = nearest_ssim(gen, train, candidates=None)
    assert np.all(exact.numpy() >= m.nearest_ssim - 1e-12)
    mf = memorization(gen, train, generated_features=gen.flatten(1), training_features=train.flatten(1))
    assert np.allclose(mf.nearest_feature_distance[:3], 0.0) and mf.mean_nearest_feature_distance > 0


# --- modes of the 25-mode mixture --------------------------------------------------------------------

def test_mode_coverage_of_the_grid_mixture():
    mix = grid_mixture()
    x = mix.sample(5000, seed=0)
    full = mode_coverage(x, mix.means, mix.std)
    assert full.covered == 25 and full.n == 5000 and full.high_quality > 0.98
    assert full.mean_mode_variance == pytest.approx(2 * mix.std**2, rel=0.1)  # trace of std^2 I_2
    lost = mode_coverage(x[mix.mode_of(x) < 20], mix.means, mix.std)  # drop the last 5 modes
    assert lost.covered == 20 and not lost.covered_mask[20:].any() and np.all(lost.mode_variance[20:] == 0)


def test_coverage_of_one_distribution_matches_its_expectation():
    """Naeem et al. 2020 Sec. 3.2: E[coverage] = 1 - prod_j (N - j) / (N + M - j) for real ~ fake."""
    g = torch.Generator().manual_seed(5)
    cov = [density_coverage(torch.randn(100, 3, generator=g), torch.randn(80, 3, generator=g), k=2).coverage
           for _ in range(300)]
    expected = expected_coverage(100, 80, k=2)
    assert expected == pytest.approx(1 - (99 * 98) / (179 * 178))
    assert np.mean(cov) == pytest.approx(expected, abs=4 * np.std(cov) / np.sqrt(len(cov)))
    assert expected_coverage(10**6, 10**6, k=5) == pytest.approx(1 - 2**-5, rel=1e-5)


def test_class_dispersion_is_the_trace_of_each_class_covariance():
    from madlib.metrics import class_dispersion

    rng = np.random.default_rng(0)
    f = np.concatenate([rng.normal(0, 1, (4000, 3)), rng.normal(5, 0.1, (4000, 3)), np.ones((1, 3))])
    y = np.concatenate([np.zeros(4000), np.ones(4000), [2]]).astype(int)
    d = class_dispersion(f, y, 4)
    assert d[0] == pytest.approx(3.0, rel=0.05) and d[1] == pytest.approx(0.03, rel=0.05)
    assert np.isnan(d[2]) and np.isnan(d[3])  # one sample, no sample


def test_image_grid_places_images_row_major():
    from madlib.plotting import image_grid

    images = np.arange(3)[:, None, None, None] * np.ones((3, 1, 2, 2), dtype=np.uint8)
    grid = image_grid(images, 2, pad=1)
    assert grid.shape == (5, 5)
    assert grid[0, 0] == 0 and grid[0, 3] == 1 and grid[3, 0] == 2 and grid[2, 2] == 2  # pad = max


def test_class_grid_puts_sample_i_of_class_c_at_row_i_column_c():
    from madlib.plotting import class_grid

    labels = np.array([1, 0, 1, 0, 0])
    images = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((5, 1, 2, 2), dtype=np.uint8)
    grid = class_grid(images, labels, per_class=2, num_classes=2, pad=0)
    assert grid.shape == (4, 4)
    assert [grid[0, 0], grid[0, 2], grid[2, 0], grid[2, 2]] == [1, 0, 3, 2]  # class 0: images 1, 3; class 1: 0, 2
    with pytest.raises(ValueError, match="per_class must be <= the smallest class count"):
        class_grid(images, labels, per_class=3, num_classes=2)


def test_total_variation_is_half_the_l1_distance_scipy_computes():
    from scipy.spatial.distance import cityblock

    from madlib.metrics import total_variation

    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(10), size=3), rng.dirichlet(np.ones(10), size=3)  # [3, 10] class histograms
    np.testing.assert_allclose(total_variation(p, q), [cityblock(a, b) / 2 for a, b in zip(p, q)])
    assert total_variation(p[0], p[0]) == 0 and total_variation([1, 0], [0, 1]) == 1
