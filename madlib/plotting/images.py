"""Sample grids: images laid out as one array for imshow."""

from __future__ import annotations

import numpy as np
import torch


def image_grid(images, ncols: int, *, pad: int = 1) -> np.ndarray:
    """uint8 or float images [n, 1, H, W] -> one [rows (H + pad) - pad, ncols (W + pad) - pad] array, row-major,
    padding filled with the maximum value (white lines between images on a gray colour map)."""
    x = torch.as_tensor(images).cpu().numpy()
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"images must be [n, 1, H, W]; got {x.shape}")
    n, _, h, w = x.shape
    rows = -(-n // ncols)
    grid = np.full((rows * (h + pad) - pad, ncols * (w + pad) - pad), x.max() if n else 0, dtype=x.dtype)
    for i in range(n):
        r, c = divmod(i, ncols)
        grid[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = x[i, 0]
    return grid


def class_grid(images, labels, *, per_class: int, num_classes: int = 10, pad: int = 1) -> np.ndarray:
    """The first ``per_class`` images of each class as one :func:`image_grid`: a column per class, a row per sample.

    images [n, 1, H, W], labels [n]; every class must hold at least ``per_class`` images.
    """
    x, y = torch.as_tensor(images), torch.as_tensor(labels)
    picks = [torch.nonzero(y == c)[:per_class, 0] for c in range(num_classes)]
    if min(len(p) for p in picks) < per_class:
        raise ValueError(f"per_class must be <= the smallest class count ({min(len(p) for p in picks)}); got {per_class}")
    chosen = x[torch.stack(picks, dim=1).reshape(-1)]  # row-major: sample i of every class, then sample i + 1
    return image_grid(chosen, num_classes, pad=pad)


def show_images(ax, grid, title: str) -> None:
    """A uint8 sample grid (:func:`image_grid`, :func:`class_grid`) on ``ax``: grey 0..255, titled, no ticks."""
    ax.imshow(grid, cmap="gray", vmin=0, vmax=255)
    ax.set(title=title, xticks=[], yticks=[])
