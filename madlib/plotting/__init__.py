"""One figure style and reusable panels (the only place madlib imports matplotlib)."""

from madlib.plotting.images import class_grid, image_grid, show_images
from madlib.plotting.style import apply_style, band, log_ticks, scale_caption, spread_band

__all__ = ["apply_style", "band", "class_grid", "image_grid", "log_ticks", "scale_caption", "show_images", "spread_band"]
