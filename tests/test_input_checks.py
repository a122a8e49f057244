"""Library inputs that used to pass silently (issue 29, item 5): each is refused with a ValueError that names the
argument and what it accepts, before anything is computed."""

from __future__ import annotations

import math

import pytest
import torch

from madlib.data import to_uint8
from madlib.diffusion.config import EDMConfig
from madlib.methods import casd
from madlib.methods.sims import SIMSConfig, SIMSModel, sims_grid, sims_sample

TINY_SIMS = SIMSConfig(image_size=8, base_channels=8, channel_mults=(1, 2), sample_steps=3, sample_batch=8)

pytestmark = pytest.mark.usefixtures("one_thread")


# --- EDMConfig: every numeric field finite and in its range, 0 < sigma_min < sigma_max -------------------------

@pytest.mark.parametrize(("field", "value", "message"), [
    ("sigma_min", -0.002, r"sigma_min must lie in \(0, inf\); got -0.002"),
    ("sigma_min", 0.0, r"sigma_min must lie in \(0, inf\); got 0"),
    ("sigma_min", math.nan, r"sigma_min must lie in \(0, inf\); got nan"),
    ("sigma_max", math.inf, r"sigma_max must lie in \(0, inf\); got inf"),
    ("sigma_max", math.nan, r"sigma_max must lie in \(0, inf\); got nan"),
    ("sigma_max", 0.001, r"sigma_min must be below sigma_max .*sigma_min = 0.002, sigma_max = 0.001"),
    ("sigma_max", 0.002, r"sigma_min must be below sigma_max .*sigma_min = 0.002, sigma_max = 0.002"),
    ("rho", math.nan, r"rho must lie in \(0, inf\); got nan"),
    ("rho", math.inf, r"rho must lie in \(0, inf\); got inf"),
    ("rho", 0.0, r"rho must lie in \(0, inf\); got 0"),
    ("rho", -7.0, r"rho must lie in \(0, inf\); got -7"),
    ("lr", math.nan, r"lr must lie in \(0, 1\]; got nan"),
    ("ema_decay", math.inf, r"ema_decay must lie in \[0, 1\); got inf"),
    ("channel_mults", (1, 0), r"channel_mults\[1\] must be an integer >= 1; got 0"),
    ("channel_mults", (), r"channel_mults must hold at least one multiplier"),
])
def test_edm_config_refuses_a_bad_field_by_name(field, value, message):
    with pytest.raises(ValueError, match=message):
        EDMConfig(**{field: value})
    with pytest.raises(ValueError, match=message):  # and so do the SIMS and CASD settings built on it
        SIMSConfig(**{field: value})
    with pytest.raises(ValueError, match=message):
        casd.EDMSettings(**{field: value})


def test_edm_config_accepts_its_defaults_and_a_valid_grid():
    sigmas = EDMConfig(sigma_min=0.01, sigma_max=10.0, rho=3.0, sample_steps=4).sigmas()
    assert torch.isfinite(sigmas).all() and sigmas[0] == pytest.approx(10.0) and sigmas[-2] == pytest.approx(0.01)
    assert torch.isfinite(EDMConfig().sigmas()).all()


def test_the_image_family_checks_the_sigma_grid_as_edm_config_does():
    from madlib.models.images import ImageDiffusionFamily

    with pytest.raises(ValueError, match=r"sigma_max must lie in \(0, inf\); got inf"):
        ImageDiffusionFamily("digits", image_size=8, objective="edm", sigma_max=math.inf)
    with pytest.raises(ValueError, match=r"sigma_min must lie in \(0, inf\); got -1"):
        ImageDiffusionFamily("digits", image_size=8, objective="edm", sigma_min=-1.0)


# --- to_uint8: NaN has no grey level ---------------------------------------------------------------------------

def test_to_uint8_refuses_nan_naming_the_images():
    images = torch.zeros(3, 1, 2, 2)
    images[1, 0, 0, 1] = math.nan
    images[2] = math.nan
    with pytest.raises(ValueError, match=r"images must not hold NaN .*got 5 NaN values in 2 of 3 images"):
        to_uint8(images)
    with pytest.raises(ValueError, match=r"images must not hold NaN .*got 1 NaN values in 1 of 2 values"):
        to_uint8(torch.tensor([0.5, math.nan]), (-1.0, 1.0))
    # what stays: values outside the range, infinities included, clip to its ends
    assert to_uint8(torch.tensor([-math.inf, -2.0, 0.5, 2.0, math.inf])).tolist() == [0, 0, 128, 255, 255]


# --- CASD: images and labels paired one to one -----------------------------------------------------------------

def test_first_n_balanced_refuses_images_and_labels_of_different_lengths():
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2])
    images = torch.arange(10).reshape(10, 1, 1, 1)  # two more images than labels
    with pytest.raises(ValueError, match="images and labels must hold one label per image; got 10 images and 8 labels"):
        casd.first_n_balanced(images, labels, 3)
    with pytest.raises(ValueError, match="got 7 images and 8 labels"):
        casd.first_n_balanced(images[:7], labels, 3)
    x, y = casd.first_n_balanced(images[:8], labels, 3)  # paired: the first image of each class
    assert y.tolist() == [0, 1, 2] and x.flatten().tolist() == [0, 1, 3]


# --- SIMS: w >= -1 (Eq. 5; w = -1 is the auxiliary model alone) -----------------------------------------------

def _untrained(seed: int) -> SIMSModel:
    return SIMSModel(TINY_SIMS.network(seed), images_seen=0, stats=None)


def test_sims_sample_refuses_w_below_minus_one():
    base, aux = _untrained(0), _untrained(1)
    for w in (-1.5, -2.0, -math.inf, math.nan):
        with pytest.raises(ValueError, match=r"w must be a finite number >= -1|w \(guidance weight\) must be finite"):
            sims_sample(base, aux, w, 4, TINY_SIMS, seed=0)
    with pytest.raises(ValueError, match=r"w must be a finite number >= -1 \(SIMS Eq. 5.*got w = -1.5"):
        sims_sample(base, aux, -1.5, 4, TINY_SIMS, seed=0)
    # the edge of the range is the auxiliary model alone
    assert torch.equal(sims_sample(base, aux, -1.0, 4, TINY_SIMS, seed=0), sims_sample(aux, None, 0.0, 4, TINY_SIMS, seed=0))


def test_sims_grid_refuses_w_below_minus_one_before_the_first_chain():
    def measure(images):
        raise AssertionError("no chain may run before every w is checked")

    with pytest.raises(ValueError, match=r"ws\[2\] must be a finite number >= -1 .*got ws\[2\] = -3"):
        sims_grid(_untrained(0), {8: _untrained(1)}, [0.0, 1.0, -3.0], 4, TINY_SIMS, measure, seed=0)
