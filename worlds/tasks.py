"""The demo world's image tasks: 6 SOURCE tasks (pre-training) and 19 TARGET datasets.

Every task draws 32x32 RGB images class by class from a seeded generator. Sources are of
clearly different kinds (handwritten digits, typeset glyphs, filled shapes, oriented gratings,
synthetic textures, photo patches); targets range from near a source (same kind, new classes or
styles) to far from all of them (faces, symmetry, colour), with 2 to 10 classes and 5 to 40
training images per class. Targets built from one generator or image pool share a ``family``:
evaluation holds a family out together.

``part`` names which disjoint slice of an image pool a draw may use: ``source_train`` /
``source_test`` for sources, ``train`` / ``val`` / ``test`` for targets (see
:mod:`worlds.sources`); procedural tasks just draw fresh random images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from worlds import images as im
from worlds import sources as src

DrawFn = Callable[[np.random.Generator, int, int, str, int], np.ndarray]
"""(rng, class index, image size, part, world seed) -> uint8 image (size, size, 3)."""


@dataclass(frozen=True)
class ImageTask:
    """A classification task: class names, how to draw class ``k``, and its card."""

    name: str
    classes: tuple[str, ...]
    draw: DrawFn
    family: str
    description: str
    train_per_class: int = 0  # targets: the shots of the train split

    def sample(self, seed: int, part: str, n_per_class: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Images ``(N, size, size, 3)`` uint8 and labels ``(N,)`` int64, class by class."""
        rng = np.random.default_rng(_seed_list(seed, "images", self.name, part))
        imgs = [self.draw(rng, k, size, part, seed) for k in range(len(self.classes)) for _ in range(n_per_class)]
        labels = np.repeat(np.arange(len(self.classes), dtype=np.int64), n_per_class)
        return im.stack(imgs), labels


def _seed_list(seed: int, *parts: str) -> list[int]:
    """numpy SeedSequence entropy from the seed and names (stable across processes)."""
    import hashlib

    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return [seed, *(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))]


# ----------------------------------------------------------------------------- renderers


def _finish(rng: np.random.Generator, img: np.ndarray, sigma: float = 6.0) -> np.ndarray:
    return im.add_noise(rng, img, sigma)


@lru_cache(maxsize=32)
def _digit_pool(seed: int, part: str) -> tuple[np.ndarray, ...]:
    return tuple(src.digit_indices(seed, part))


def _digit_mask(rng: np.random.Generator, digit: int, size: int, part: str, seed: int) -> np.ndarray:
    """A handwritten digit (a pool original of class ``digit``) scaled to 16-28 px, placed at random."""
    pool = _digit_pool(seed, part)[digit]
    glyph = src.digit_image(int(rng.choice(pool)))
    side = int(rng.integers(20, 29))
    small = im.resize_float(glyph, side)
    mask = np.zeros((size, size), np.float32)
    x, y = rng.integers(0, size - side + 1, 2)
    mask[y : y + side, x : x + side] = small
    return mask


def _light_on_dark(rng) -> tuple[im.Colour, im.Colour]:
    return im.random_colour(rng, value=(0.0, 0.35)), im.random_colour(rng, value=(0.7, 1.0))


def _draw_digit(rng, k, size, part, seed):
    """Light ink on a dark background (the polarity stays fixed: the nets are tiny)."""
    bg, fg = _light_on_dark(rng)
    return _finish(rng, im.colourise(_digit_mask(rng, k, size, part, seed), bg, fg))


def _draw_digit_on_noise(rng, k, size, part, seed):
    """Light ink on a dark smooth-noise background (two dark colours)."""
    mask = _digit_mask(rng, k, size, part, seed)
    c1, c2 = im.random_colour(rng, value=(0.0, 0.45)), im.random_colour(rng, value=(0.0, 0.45))
    background = im.colourise(im.value_noise(rng, size, int(rng.integers(3, 9))), c1, c2)
    return _finish(rng, im.colourise(mask, background, im.random_colour(rng, value=(0.75, 1.0))))


def _draw_digit_parity(rng, k, size, part, seed):
    digit = int(rng.choice([0, 2, 4, 6, 8] if k == 0 else [1, 3, 5, 7, 9]))
    return _draw_digit(rng, digit, size, part, seed)


SOURCE_FONTS = ("DejaVuSans", "DejaVuSerif", "DejaVuSansMono", "DejaVuSans-Bold", "DejaVuSerif-Bold",
                "DejaVuSans-Oblique")


def _glyph(rng, char: str, size: int, font_name: str, *, any_polarity: bool = True, **kwargs) -> np.ndarray:
    bg, fg = im.contrasting_pair(rng) if any_polarity else _light_on_dark(rng)
    return _finish(rng, im.colourise(im.glyph_mask(rng, char, font_name, size, **kwargs), bg, fg))


def _glyph_task(chars: str, *, any_polarity: bool) -> DrawFn:
    def draw(rng, k, size, part, seed):
        font_name = SOURCE_FONTS[int(rng.integers(len(SOURCE_FONTS)))]
        return _glyph(rng, chars[k], size, font_name, any_polarity=any_polarity)

    return draw


_STYLE_FONTS = {
    "sans": ("DejaVuSans", "DejaVuSansCondensed", "DejaVuSans-Bold"),
    "serif": ("DejaVuSerif", "DejaVuSerifCondensed", "DejaVuSerif-Bold"),
    "mono": ("DejaVuSansMono", "DejaVuSansMono-Bold"),
}
_STYLE_CHARS = "abcdefghijkmnpqrstuvwxyzABCDEFGHIJKLMNPQRSTUVWXYZ"


def _draw_font_style(rng, k, size, part, seed):
    fonts = list(_STYLE_FONTS.values())[k]
    char = _STYLE_CHARS[int(rng.integers(len(_STYLE_CHARS)))]
    return _glyph(rng, char, size, fonts[int(rng.integers(len(fonts)))], height=(0.7, 0.9), rotate=4.0)


def _symbol_task(chars: str, rotate: float) -> DrawFn:
    def draw(rng, k, size, part, seed):
        return _glyph(rng, chars[k], size, "DejaVuSans", height=(0.45, 0.75), rotate=rotate)

    return draw


def _draw_typed_or_handwritten(rng, k, size, part, seed):
    digit = int(rng.integers(10))
    if k == 0:
        return _draw_digit(rng, digit, size, part, seed)
    return _glyph(rng, str(digit), size, SOURCE_FONTS[int(rng.integers(len(SOURCE_FONTS)))], any_polarity=False)


def _shape(rng, shape: str, size: int, *, outline: int = 0) -> np.ndarray:
    radius = rng.uniform(0.26, 0.42) * size
    centre = tuple(rng.uniform(radius + 1, size - radius - 1, 2))
    return im.shape_mask(rng, shape, size, radius=radius, centre=centre, outline=outline)


SOURCE_SHAPES = ("circle", "square", "triangle", "cross", "star", "hexagon")


def _draw_filled_shape(rng, k, size, part, seed):
    bg, fg = _light_on_dark(rng)
    return _finish(rng, im.colourise(_shape(rng, SOURCE_SHAPES[k], size), bg, fg))


OUTLINE_SHAPES = ("circle", "square", "triangle", "cross")


def _draw_outlined_shape(rng, k, size, part, seed):
    bg, fg = im.contrasting_pair(rng)
    return _finish(rng, im.colourise(_shape(rng, OUTLINE_SHAPES[k], size, outline=max(1, size // 14)), bg, fg))


def _draw_shape_count(rng, k, size, part, seed):
    """``k + 1`` small filled shapes at non-overlapping places."""
    bg, fg = im.contrasting_pair(rng)
    mask = np.zeros((size, size), np.float32)
    cells = rng.permutation(16)[: k + 1]  # a 4x4 grid of cells, one shape per chosen cell
    step = size / 4
    for cell in cells:
        r = rng.uniform(0.25, 0.4) * step
        cx = (cell % 4 + 0.5) * step + rng.uniform(-0.1, 0.1) * step
        cy = (cell // 4 + 0.5) * step + rng.uniform(-0.1, 0.1) * step
        shape = ("circle", "square")[int(rng.integers(2))]
        mask = np.maximum(mask, im.shape_mask(rng, shape, size, radius=r, centre=(cx, cy)))
    return _finish(rng, im.colourise(mask, bg, fg))


TEXTURED_SHAPES = ("circle", "square", "triangle")


def _draw_textured_shape(rng, k, size, part, seed):
    """A shape filled with a grating, on a smooth-noise background."""
    fill = im.colourise(
        im.grating_field(size, rng.uniform(0, np.pi), rng.uniform(3, 6), rng.uniform(0, 2 * np.pi)),
        im.random_colour(rng), im.random_colour(rng),
    )
    return _finish(rng, im.colourise(_shape(rng, TEXTURED_SHAPES[k], size), im.noise_background(rng, size), fill))


def _grating(rng, size: int, theta: float, cycles: float) -> np.ndarray:
    bg, fg = im.contrasting_pair(rng)
    return im.colourise(im.grating_field(size, theta, cycles, rng.uniform(0, 2 * np.pi)), bg, fg)


def _draw_orientation(rng, k, size, part, seed):
    theta = np.deg2rad(30 * k + rng.uniform(-6, 6))
    return _finish(rng, _grating(rng, size, theta, rng.uniform(2.0, 6.0)))


def _draw_gabor(rng, k, size, part, seed):
    """A small Gabor patch at 22.5 + 45k degrees (between the source orientations) on noise."""
    theta = np.deg2rad(22.5 + 45 * k + rng.uniform(-5, 5))
    field = im.grating_field(size, theta, rng.uniform(4.0, 7.0), rng.uniform(0, 2 * np.pi))
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    cx, cy = rng.uniform(0.35, 0.65, 2) * size
    sigma = rng.uniform(0.15, 0.25) * size
    envelope = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2)).astype(np.float32)
    grey = rng.uniform(70, 180)
    img = grey + (field - 0.5) * envelope * rng.uniform(120, 200)
    return _finish(rng, im.grey_to_rgb(img), sigma=10.0)


_STRIPE_CYCLES = (1.5, 3.5, 7.5)


def _draw_stripe_frequency(rng, k, size, part, seed):
    return _finish(rng, _grating(rng, size, rng.uniform(0, np.pi), _STRIPE_CYCLES[k] * rng.uniform(0.85, 1.15)))


SOURCE_TEXTURES = ("smooth_noise", "speckle", "checker", "dots", "bricks", "cells")


def _texture_field(rng, kind: str, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    if kind == "smooth_noise":
        return im.value_noise(rng, size, int(rng.integers(3, 7)))
    if kind == "speckle":
        return (rng.uniform(size=(size, size)) < rng.uniform(0.2, 0.5)).astype(np.float32)
    if kind == "checker":
        cell = rng.uniform(3, 8)
        ox, oy = rng.uniform(0, cell, 2)
        return (((xx + ox) // cell + (yy + oy) // cell) % 2).astype(np.float32)
    if kind == "dots":
        period = rng.uniform(5, 9)
        ox, oy = rng.uniform(0, period, 2)
        dx = (xx + ox) % period - period / 2
        dy = (yy + oy) % period - period / 2
        return (dx**2 + dy**2 < (rng.uniform(0.2, 0.35) * period) ** 2).astype(np.float32)
    if kind == "bricks":
        h = rng.uniform(5, 9)
        w = h * rng.uniform(1.8, 2.6)
        oy = rng.uniform(0, h)
        row = (yy + oy) // h
        xs = xx + (row % 2) * w / 2 + rng.uniform(0, w)
        mortar = ((yy + oy) % h < 1.2) | (xs % w < 1.2)
        return mortar.astype(np.float32)
    if kind == "cells":  # Voronoi cell borders
        pts = rng.uniform(0, size, (int(rng.integers(8, 16)), 2))
        d = np.sqrt((xx[..., None] - pts[:, 0]) ** 2 + (yy[..., None] - pts[:, 1]) ** 2)
        d.sort(axis=-1)
        return (d[..., 1] - d[..., 0] < 1.5).astype(np.float32)
    raise ValueError(f"unknown texture {kind!r}")


def _draw_texture(rng, k, size, part, seed):
    bg, fg = im.contrasting_pair(rng)
    return _finish(rng, im.colourise(_texture_field(rng, SOURCE_TEXTURES[k], size), bg, fg), sigma=4.0)


_GRAIN_CELLS = (16, 8, 4, 2)  # grid cells across the image: coarse to fine grain


def _draw_noise_grain(rng, k, size, part, seed):
    c1, c2 = im.random_colour(rng), im.random_colour(rng)
    return _finish(rng, im.colourise(im.value_noise(rng, size, max(2, size // _GRAIN_CELLS[k] * 2)), c1, c2), 3.0)


def _photo_task(photos: tuple[str, ...], bands: dict[str, tuple[float, float]], scale: tuple[int, int]) -> DrawFn:
    def draw(rng, k, size, part, seed):
        return im.crop_patch(rng, src.photo(photos[k]), size, scale=scale, x_range=bands[part])

    return draw


def _draw_face(rng, k, size, part, seed):
    """A 25x25 LFW crop (class 1 = face, 0 = not a face) resized to ``size``, random flip and contrast."""
    pool = src.face_indices(seed, part)[k]
    grey = src.face_image(int(rng.choice(pool)))
    if rng.uniform() < 0.5:
        grey = grey[:, ::-1]
    grey = im.resize_float(np.ascontiguousarray(grey), size)
    img = rng.uniform(0.8, 1.2) * (grey - 0.5) + 0.5 + rng.uniform(-0.1, 0.1)
    return _finish(rng, im.grey_to_rgb(img * 255.0), sigma=4.0)


_BLOB_HUES = (0.0, 0.16, 0.33, 0.6, 0.83)  # red, yellow, green, blue, magenta


def _draw_colour_blob(rng, k, size, part, seed):
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    img = np.broadcast_to(np.asarray(im.random_colour(rng, saturation=(0, 0.4), value=(0.05, 0.4)), np.float32),
                          (size, size, 3)).copy()
    for _ in range(int(rng.integers(1, 4))):
        colour = np.asarray(im.random_colour(rng, hue=_BLOB_HUES[k] + rng.uniform(-0.05, 0.05),
                                             saturation=(0.4, 1.0), value=(0.5, 1.0)), np.float32)
        cx, cy = rng.uniform(0, size, 2)
        sigma = rng.uniform(0.08, 0.18) * size
        alpha = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))[..., None]
        img = img * (1 - alpha) + colour * alpha
    return _finish(rng, img, 5.0)


def _draw_symmetry(rng, k, size, part, seed):
    """A random 8x8 colour pattern, mirror-symmetric left-right for class 1."""
    grid = rng.uniform(size=(8, 8)) < 0.5
    if k == 1:
        grid[:, 4:] = grid[:, :4][:, ::-1]
    bg, fg = im.contrasting_pair(rng)
    mask = np.kron(grid.astype(np.float32), np.ones((size // 8, size // 8), np.float32))
    return _finish(rng, im.colourise(mask, bg, fg))


# ----------------------------------------------------------------------------- the tasks


SOURCE_TASKS: dict[str, ImageTask] = {
    t.name: t
    for t in (
        ImageTask("digits", tuple(str(d) for d in range(10)), _draw_digit, "digits",
                  "scikit-learn handwritten digits (8x8) scaled to 20-28 px, light on dark, random colours and place"),
        ImageTask("glyphs", tuple("AEFHKMNRTX"), _glyph_task("AEFHKMNRTX", any_polarity=False), "glyphs",
                  "10 upper-case letters typeset in 6 DejaVu fonts, rotated +-12 degrees, light on dark"),
        ImageTask("shapes", SOURCE_SHAPES, _draw_filled_shape, "shapes",
                  "6 filled shapes, random size, rotation and place, light on dark"),
        ImageTask("gratings", tuple(f"deg{30 * k:03d}" for k in range(6)), _draw_orientation, "gratings",
                  "full-field sinusoidal gratings at 6 orientations (30 degree steps), random frequency"),
        ImageTask("textures", SOURCE_TEXTURES, _draw_texture, "textures",
                  "6 synthetic two-colour textures: smooth noise, speckle, checker, dots, bricks, Voronoi cells"),
        ImageTask("photo_patches", src.SOURCE_PHOTOS, _photo_task(src.SOURCE_PHOTOS, src.SOURCE_PHOTO_BANDS, (24, 96)),
                  "photos", "patches of 8 bundled photos (scikit-image), class = photo, left 50% of each photo"),
    )
}

TARGET_TASKS: dict[str, ImageTask] = {
    t.name: t
    for t in (
        ImageTask("digits_on_noise", tuple(str(d) for d in range(10)), _draw_digit_on_noise, "digits",
                  "NEAR digits: held-out handwritten digits on dark smooth-noise backgrounds", 10),
        ImageTask("digit_parity", ("even", "odd"), _draw_digit_parity, "digits",
                  "NEAR digits: held-out handwritten digits, even vs odd", 20),
        ImageTask("lowercase_glyphs", tuple("abdeghnr"), _glyph_task("abdeghnr", any_polarity=True), "glyphs",
                  "NEAR glyphs: 8 lower-case letters in the source fonts, either polarity", 10),
        ImageTask("font_style", tuple(_STYLE_FONTS), _draw_font_style, "glyphs",
                  "MID glyphs: which font family (sans, serif, mono) a random letter is set in", 25),
        ImageTask("typed_vs_handwritten", ("handwritten", "typed"), _draw_typed_or_handwritten, "digits",
                  "MID digits + glyphs: a held-out handwritten digit or a typeset one", 10),
        ImageTask("card_suits", ("spade", "club", "heart", "diamond"), _symbol_task("♠♣♥♦", 12.0), "symbols",
                  "MID glyphs/shapes: card-suit symbols (DejaVu Sans)", 8),
        ImageTask("arrows", ("left", "up", "right", "down"), _symbol_task("←↑→↓", 8.0), "symbols",
                  "MID glyphs/orientation: arrow direction (DejaVu Sans)", 8),
        ImageTask("outlined_shapes", OUTLINE_SHAPES, _draw_outlined_shape, "shapes",
                  "NEAR shapes: shape outlines only", 10),
        ImageTask("shape_count", ("one", "two", "three", "four"), _draw_shape_count, "shapes",
                  "MID shapes: how many small shapes are drawn (1-4)", 20),
        ImageTask("textured_shapes", TEXTURED_SHAPES, _draw_textured_shape, "textured_shapes",
                  "MID shapes + gratings: grating-filled shapes on noise backgrounds", 15),
        ImageTask("gabor_orientation", tuple(f"deg{22.5 + 45 * k:05.1f}" for k in range(4)), _draw_gabor, "gratings",
                  "NEAR gratings: orientation of a small grey Gabor patch, between the source orientations", 10),
        ImageTask("stripe_frequency", ("wide", "medium", "narrow"), _draw_stripe_frequency, "gratings",
                  "MID gratings: spatial frequency of stripes at any orientation", 10),
        ImageTask("noise_grain", ("coarse", "medium", "fine", "finest"), _draw_noise_grain, "textures",
                  "NEAR textures: grain size of smooth two-colour noise", 10),
        ImageTask("texture_photos", src.TEXTURE_PHOTOS,
                  _photo_task(src.TEXTURE_PHOTOS, src.WHOLE_PHOTO_BANDS, (24, 64)), "texture_photos",
                  "MID textures + photos: patches of 5 grey photos (brick, grass, gravel, coins, page)", 10),
        ImageTask("photo_regions", src.SOURCE_PHOTOS,
                  _photo_task(src.SOURCE_PHOTOS, src.TARGET_PHOTO_BANDS, (24, 64)), "photos",
                  "NEAR photo_patches: the same 8 photos, patches from their right half (unseen in pre-training)", 5),
        ImageTask("sample_photos", src.SAMPLE_PHOTOS, _photo_task(src.SAMPLE_PHOTOS, src.WHOLE_PHOTO_BANDS, (24, 96)),
                  "sample_photos", "FAR-ish photos: patches of scikit-learn's two sample photos (china, flower)", 10),
        ImageTask("faces", ("not_face", "face"), _draw_face, "faces",
                  "FAR: scikit-image lfw_subset, face vs non-face crops (test views repeat originals: "
                  "60 originals per class, so the effective test size is smaller)", 15),
        ImageTask("colour_blobs", ("red", "yellow", "green", "blue", "magenta"), _draw_colour_blob, "colour",
                  "FAR: hue of soft colour blobs on dark backgrounds", 5),
        ImageTask("symmetry", ("asymmetric", "symmetric"), _draw_symmetry, "symmetry",
                  "FAR: is a random 8x8 block pattern mirror-symmetric", 40),
    )
}
