"""FID, KID and precision / recall through torch-fidelity, with the project's LeNet as feature extractor.

Importing this module registers :class:`LeNetFeatureExtractor` with torch-fidelity once, under the
name :data:`EXTRACTOR_NAME` (``"madlib-lenet"``), so ``torch_fidelity.calculate_metrics(...,
feature_extractor="madlib-lenet")`` works. Its weights come from the project's cache
(:func:`madlib.metrics.lenet.load_lenet`): the default recipe, or the cache file named by
torch-fidelity's ``feature_extractor_weights_path`` (validated the same way).

Conventions of torch-fidelity 0.4 followed here: ``input1`` is the *generated* set and ``input2`` the
*real* one; precision = share of input1 inside the input2 manifold, recall = the reverse (versions
< 0.4 swapped them). Its default neighbourhood is k = 3; these wrappers pass k = 5 (MAD's).
Small samples: the KID subset size is clipped to the smaller sample size. Nothing is printed
(``verbose=False``), no worker processes are started (``save_cpu_ram=True``) and torch-fidelity's own
disk cache is off (the inputs are in memory). ``cuda`` follows the requested device.

This is the only module of madlib that imports torch-fidelity.
"""

from __future__ import annotations

import torch
import torch_fidelity
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric
from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from madlib._checks import check_int
from madlib.metrics.lenet import DEFAULT_RECIPE, load_lenet, to_lenet_input

__all__ = ["EXTRACTOR_NAME", "LeNetFeatureExtractor", "ImageTensorDataset", "fidelity_metrics",
           "fidelity_metrics_from_features"]

EXTRACTOR_NAME = "madlib-lenet"


class LeNetFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity feature extractor: uint8 [B, C, H, W] -> ("features" [B, 128], "logits" [B, 10]).

    ``feature_extractor_weights_path``: a LeNet cache file (default: the default recipe's, trained on
    first use). All metrics use "features" except the Inception Score, which uses "logits".
    """

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            self.model = load_lenet(DEFAULT_RECIPE)
        else:
            recipe = _recipe_of(feature_extractor_weights_path)
            if recipe is None:
                raise ValueError(f"feature_extractor_weights_path {feature_extractor_weights_path!r} is not a readable "
                                 "LeNet cache file (make one with madlib.metrics.lenet.load_lenet)")
            self.model = load_lenet(recipe, path=feature_extractor_weights_path)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x):
        features, logits = self.model(to_lenet_input(x))
        out = {"features": features.float(), "logits": logits.float()}
        return tuple(out[name] for name in self.features_list)

    @staticmethod
    def get_provided_features_list():
        return "features", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "features", "kid": "features", "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 1, 28, 28, dtype=torch.uint8)


def _recipe_of(path):
    """The LeNetRecipe stored in a cache file, or None if it cannot be read (load_lenet then rebuilds)."""
    from madlib.metrics.lenet import LeNetRecipe

    try:
        recipe = torch.load(path, map_location="cpu", weights_only=True)["recipe"]
        fields = {k: recipe[k] for k in LeNetRecipe.__dataclass_fields__}
        return LeNetRecipe(**fields)
    except Exception:
        return None


if EXTRACTOR_NAME not in FEATURE_EXTRACTORS_REGISTRY:  # once per process, also under importlib.reload
    torch_fidelity.register_feature_extractor(EXTRACTOR_NAME, LeNetFeatureExtractor)


class ImageTensorDataset(Dataset):
    """In-memory images [N, C, H, W] as torch-fidelity expects them: uint8 [C, H, W] per item.

    Float images are taken to lie in ``pixel_range`` (default [0, 1]) and quantised to 0..255.
    """

    def __init__(self, images: torch.Tensor, pixel_range: tuple[float, float] = (0.0, 1.0)):
        images = torch.as_tensor(images)
        if images.ndim == 3:
            images = images.unsqueeze(1)
        if images.ndim != 4:
            raise ValueError(f"images must be [N, C, H, W]; got shape {tuple(images.shape)}")
        if images.dtype != torch.uint8:
            low, high = pixel_range
            images = torch.round((images.double() - low) / (high - low) * 255.0).clamp(0, 255).to(torch.uint8)
        self.images = images.cpu()

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, i):
        return self.images[i]


def _kwargs(device, k: int, n_real: int, n_fake: int, kid_subsets: int, kid_subset_size: int, seed: int) -> dict:
    return dict(cuda=torch.device(device).type == "cuda", verbose=False, cache=False, save_cpu_ram=True,
                prc_neighborhood=check_int("k", k, minimum=1),
                kid_subsets=check_int("kid_subsets", kid_subsets, minimum=1),
                kid_subset_size=min(check_int("kid_subset_size", kid_subset_size, minimum=2), n_real, n_fake),
                rng_seed=check_int("seed", seed, minimum=0))


def _result(metrics: dict, kw: dict, n_real: int, n_fake: int) -> dict:
    out = {"n_real": n_real, "n_fake": n_fake}
    if KEY_METRIC_FID in metrics:
        out["fid"] = float(metrics[KEY_METRIC_FID])
    if KEY_METRIC_KID_MEAN in metrics:
        out |= {"kid": float(metrics[KEY_METRIC_KID_MEAN]), "kid_std": float(metrics[KEY_METRIC_KID_STD]),
                "kid_subset_size": kw["kid_subset_size"], "kid_subsets": kw["kid_subsets"]}
    if KEY_METRIC_PRECISION in metrics:
        out |= {"precision": float(metrics[KEY_METRIC_PRECISION]), "recall": float(metrics[KEY_METRIC_RECALL]),
                "k": kw["prc_neighborhood"]}
    return out


def fidelity_metrics(real_images, fake_images, *, weights_path=None, fid: bool = True, kid: bool = True,
                     prc: bool = True, k: int = 5, kid_subsets: int = 100, kid_subset_size: int = 1000,
                     seed: int = 0, device="cpu", batch_size: int = 256,
                     pixel_range: tuple[float, float] = (0.0, 1.0)) -> dict:
    """torch-fidelity's FID, KID and precision / recall of two in-memory image sets, LeNet features.

    Args:
        real_images: [N, C, H, W]; fake_images: [M, C, H, W] (uint8, or float in ``pixel_range``).
        weights_path: a LeNet cache file (e.g. ``load_lenet("tiny").info["path"]``); None: default recipe.
        fid, kid, prc: which metrics; k: precision / recall neighbourhood (MAD: 5).
        kid_subsets, kid_subset_size: KID's subsets (size clipped to min(N, M)); seed: their draw.
        device: ``cuda`` devices run the extractor on the GPU.

    Returns:
        dict with n_real, n_fake and the chosen of fid, kid, kid_std, kid_subset_size, kid_subsets,
        precision, recall, k.
    """
    real, fake = ImageTensorDataset(real_images, pixel_range), ImageTensorDataset(fake_images, pixel_range)
    kw = _kwargs(device, k, len(real), len(fake), kid_subsets, kid_subset_size, seed)
    metrics = torch_fidelity.calculate_metrics(
        input1=fake, input2=real, fid=fid, kid=kid, prc=prc, feature_extractor=EXTRACTOR_NAME,
        feature_extractor_weights_path=None if weights_path is None else str(weights_path),
        batch_size=check_int("batch_size", batch_size, minimum=1), **kw)
    return _result(metrics, kw, len(real), len(fake))


def fidelity_metrics_from_features(real_features, fake_features, *, fid: bool = True, kid: bool = True,
                                   prc: bool = True, k: int = 5, kid_subsets: int = 100,
                                   kid_subset_size: int = 1000, seed: int = 0) -> dict:
    """The same metrics from precomputed features [N, d] (real) and [M, d] (fake), by torch-fidelity's code.

    Returns the dict of :func:`fidelity_metrics`.
    """
    real = torch.as_tensor(real_features).float().cpu()
    fake = torch.as_tensor(fake_features).float().cpu()
    kw = _kwargs("cpu", k, real.shape[0], fake.shape[0], kid_subsets, kid_subset_size, seed)
    metrics = {}
    if fid:
        metrics |= fid_statistics_to_metric(fid_features_to_statistics(fake), fid_features_to_statistics(real), False)
    if kid:
        metrics |= kid_features_to_metric(fake, real, **kw)
    if prc:
        metrics |= prc_features_to_metric(fake, real, **kw)
    return _result(metrics, kw, real.shape[0], fake.shape[0])
