"""Drawing primitives of the demo world: every function returns a uint8 RGB image ``(size, size, 3)``.

All randomness comes from the ``numpy.random.Generator`` passed in, so an image depends only on
that generator's state (same seed -> same pixels). Nothing here knows about tasks or classes.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")

Colour = tuple[int, int, int]


class DemoImageError(ValueError):
    """An offline image source (font, photo) is missing; the message names it."""


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def add_noise(rng: np.random.Generator, img: np.ndarray, sigma: float = 6.0) -> np.ndarray:
    """Gaussian pixel noise of ``sigma`` grey levels, clipped to uint8."""
    return to_uint8(img.astype(np.float32) + rng.normal(0.0, sigma, img.shape).astype(np.float32))


def random_colour(rng: np.random.Generator, *, saturation: tuple[float, float] = (0.0, 1.0),
                  value: tuple[float, float] = (0.0, 1.0), hue: float | None = None) -> Colour:
    h = rng.uniform() if hue is None else hue % 1.0
    rgb = colorsys.hsv_to_rgb(h, rng.uniform(*saturation), rng.uniform(*value))
    return tuple(int(round(255 * v)) for v in rgb)  # type: ignore[return-value]


def contrasting_pair(rng: np.random.Generator) -> tuple[Colour, Colour]:
    """(background, foreground): random colours at least ~100 grey levels apart in brightness."""
    dark = random_colour(rng, value=(0.0, 0.4))
    light = random_colour(rng, value=(0.65, 1.0))
    return (dark, light) if rng.uniform() < 0.5 else (light, dark)


def colourise(mask: np.ndarray, bg: Colour | np.ndarray, fg: Colour | np.ndarray) -> np.ndarray:
    """Blend a float mask ``(H, W)`` in [0, 1] between background and foreground (colours or images)."""
    m = np.clip(mask, 0.0, 1.0)[..., None]
    bg_arr = np.asarray(bg, dtype=np.float32)
    fg_arr = np.asarray(fg, dtype=np.float32)
    return bg_arr * (1.0 - m) + fg_arr * m


def resize(img: np.ndarray, size: int | tuple[int, int], resample: Image.Resampling = Image.Resampling.BILINEAR) -> np.ndarray:
    """Resize a uint8 (H, W) or (H, W, 3) array to ``size`` (square side or (W, H))."""
    shape = (size, size) if isinstance(size, int) else size
    return np.asarray(Image.fromarray(img).resize(shape, resample))


def resize_float(field: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a float field in [0, 1] (via 8 bits; precision is ample for images)."""
    return resize(to_uint8(field * 255.0), size).astype(np.float32) / 255.0


def polygon(n: int, *, star: bool = False) -> list[tuple[float, float]]:
    """Unit-radius vertices of a regular polygon (or an ``n``-pointed star)."""
    if star:
        angles = np.pi / 2 + np.arange(2 * n) * np.pi / n
        radii = np.where(np.arange(2 * n) % 2 == 0, 1.0, 0.45)
        return [(r * np.cos(a), r * np.sin(a)) for r, a in zip(radii, angles, strict=True)]
    angles = np.pi / 2 + np.arange(n) * 2 * np.pi / n
    return [(float(np.cos(a)), float(np.sin(a))) for a in angles]


CROSS = [
    (0.3, 1), (0.3, 0.3), (1, 0.3), (1, -0.3), (0.3, -0.3), (0.3, -1),
    (-0.3, -1), (-0.3, -0.3), (-1, -0.3), (-1, 0.3), (-0.3, 0.3), (-0.3, 1),
]  # fmt: skip
SHAPES: dict[str, list[tuple[float, float]] | None] = {
    "circle": None,
    "square": polygon(4),
    "triangle": polygon(3),
    "cross": CROSS,
    "star": polygon(5, star=True),
    "hexagon": polygon(6),
}


def shape_mask(rng: np.random.Generator, shape: str, size: int, *, radius: float, centre: tuple[float, float],
               outline: int = 0, supersample: int = 4) -> np.ndarray:
    """Anti-aliased float mask (size, size) of one shape, randomly rotated; ``outline`` > 0 draws
    only the outline, that many pixels wide."""
    big = size * supersample
    img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(img)
    cx, cy, r = centre[0] * supersample, centre[1] * supersample, radius * supersample
    width = outline * supersample
    vertices = SHAPES[shape]
    if vertices is None:
        box = [cx - r, cy - r, cx + r, cy + r]
        if outline:
            draw.ellipse(box, outline=255, width=width)
        else:
            draw.ellipse(box, fill=255)
    else:
        angle = rng.uniform(0, 2 * np.pi)
        c, s = np.cos(angle), np.sin(angle)
        pts = [(cx + r * (c * x - s * y), cy + r * (s * x + c * y)) for x, y in vertices]
        if outline:
            draw.polygon(pts, outline=255, width=width)
        else:
            draw.polygon(pts, fill=255)
    return np.asarray(img.resize((size, size), Image.Resampling.BOX), dtype=np.float32) / 255.0


def grating_field(size: int, theta: float, cycles: float, phase: float) -> np.ndarray:
    """Sinusoidal grating in [0, 1]: ``cycles`` periods across the image at angle ``theta`` (radians)."""
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    return 0.5 + 0.5 * np.sin(2 * np.pi * cycles * (xx * np.cos(theta) + yy * np.sin(theta)) + phase)


def value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth random field in [0, 1]: a ``cells`` x ``cells`` random grid upsampled bilinearly."""
    grid = rng.uniform(0.0, 1.0, (cells, cells)).astype(np.float32)
    return resize_float(grid, size)


def noise_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random two-colour smooth-noise background (float RGB)."""
    c1, c2 = random_colour(rng, value=(0.2, 0.9)), random_colour(rng, value=(0.2, 0.9))
    return colourise(value_noise(rng, size, int(rng.integers(3, 9))), c1, c2)


@lru_cache(maxsize=64)
def font(name: str, px: int) -> ImageFont.FreeTypeFont:
    path = FONT_DIR / f"{name}.ttf"
    if not path.is_file():
        raise DemoImageError(f"{path}: DejaVu font not found (the demo world renders glyphs with it)")
    return ImageFont.truetype(str(path), px)


def glyph_mask(rng: np.random.Generator, char: str, font_name: str, size: int, *,
               height: tuple[float, float] = (0.55, 0.8), rotate: float = 12.0) -> np.ndarray:
    """Float mask (size, size) of ``char`` in a DejaVu font: random height (fraction of the image),
    rotation (degrees, +-) and position; anti-aliased by 4x supersampling."""
    ss = 4
    px = int(round(rng.uniform(*height) * size * ss))
    fnt = font(font_name, px)
    canvas = Image.new("L", (size * ss * 2, size * ss * 2), 0)
    ImageDraw.Draw(canvas).text((size * ss, size * ss), char, font=fnt, fill=255, anchor="mm")
    if rotate:
        canvas = canvas.rotate(rng.uniform(-rotate, rotate), resample=Image.Resampling.BILINEAR)
    bbox = canvas.getbbox()
    if bbox is None:
        raise DemoImageError(f"font {font_name!r} has no glyph for {char!r}")
    glyph = canvas.crop(bbox)
    w, h = glyph.size
    limit = size * ss - 2 * ss
    if max(w, h) > limit:  # keep the glyph inside the image
        scale = limit / max(w, h)
        glyph = glyph.resize((max(1, int(w * scale)), max(1, int(h * scale))), Image.Resampling.BILINEAR)
        w, h = glyph.size
    out = Image.new("L", (size * ss, size * ss), 0)
    x = int(rng.integers(ss, size * ss - w - ss + 1)) if size * ss - w - 2 * ss > 0 else (size * ss - w) // 2
    y = int(rng.integers(ss, size * ss - h - ss + 1)) if size * ss - h - 2 * ss > 0 else (size * ss - h) // 2
    out.paste(glyph, (x, y))
    return np.asarray(out.resize((size, size), Image.Resampling.BOX), dtype=np.float32) / 255.0


def crop_patch(rng: np.random.Generator, photo: np.ndarray, size: int, *, scale: tuple[int, int],
               x_range: tuple[float, float] = (0.0, 1.0), flip: bool = True) -> np.ndarray:
    """A random square crop of ``photo`` (H, W, 3) of side in ``scale`` pixels, its left edge in
    ``x_range`` (fractions of the width, the crop fully inside), resized to ``size``."""
    h, w = photo.shape[:2]
    lo_x, hi_x = int(x_range[0] * w), int(x_range[1] * w)
    side = int(rng.integers(scale[0], scale[1] + 1))
    side = min(side, h, hi_x - lo_x)
    x = int(rng.integers(lo_x, hi_x - side + 1))
    y = int(rng.integers(0, h - side + 1))
    patch = photo[y : y + side, x : x + side]
    if flip and rng.uniform() < 0.5:
        patch = patch[:, ::-1]
    return resize(np.ascontiguousarray(patch), size, Image.Resampling.BOX if side > size else Image.Resampling.BILINEAR)


def grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=2)


def stack(images: Sequence[np.ndarray]) -> np.ndarray:
    return np.stack([np.asarray(i, dtype=np.uint8) for i in images])
