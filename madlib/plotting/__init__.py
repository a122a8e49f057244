"""One figure style and reusable panels (the only place madlib imports matplotlib)."""

from madlib.plotting.images import class_grid, image_grid
from madlib.plotting.style import apply_style, band, scale_caption, spread_band

__all__ = ["apply_style", "band", "class_grid", "image_grid", "scale_caption", "spread_band"]
