"""Offline image pools that ship inside installed packages, split into disjoint parts.

* handwritten digits: scikit-learn ``load_digits`` (1,797 8x8 images, 0..16 grey levels);
* photos: scikit-image ``skimage.data`` colour and grey photos, scikit-learn's two sample photos;
* faces: scikit-image ``lfw_subset`` (100 25x25 faces, then 100 non-faces).

A pool is split by index (digits, faces) or by image region (photos) so that no original image
feeds two parts: the source tasks' pre-training never sees a target's originals, and a target's
train / val / test images come from disjoint originals (or disjoint photo regions).
"""

from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np

from worlds.images import DemoImageError, grey_to_rgb, resize

logger = logging.getLogger(__name__)

#: Fractions of each class's digit / face originals per part (disjoint, in this order).
SOURCE_PARTS = {"source_train": (0.0, 0.45), "source_test": (0.45, 0.6)}
TARGET_PARTS = {"train": (0.6, 0.72), "val": (0.72, 0.76), "test": (0.76, 1.0)}
FACE_PARTS = {"train": (0.0, 0.3), "val": (0.3, 0.4), "test": (0.4, 1.0)}
#: Horizontal band (fractions of the width) each part's photo crops lie in, wholly.
SOURCE_PHOTO_BANDS = {"source_train": (0.0, 0.4), "source_test": (0.4, 0.5)}
TARGET_PHOTO_BANDS = {"train": (0.5, 0.72), "val": (0.72, 0.78), "test": (0.78, 1.0)}
WHOLE_PHOTO_BANDS = {"train": (0.0, 0.3), "val": (0.3, 0.4), "test": (0.4, 1.0)}

SOURCE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
                 "retina", "motorcycle")
TEXTURE_PHOTOS = ("brick", "grass", "gravel", "coins", "page")
SAMPLE_PHOTOS = ("china", "flower")
_MAX_SIDE = 512


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images / 16.0).astype(np.float32), data.target.astype(np.int64)


def digit_indices(seed: int, part: str) -> list[np.ndarray]:
    """Indices into ``load_digits`` of each digit class (0..9) for ``part`` (see the PARTS tables)."""
    start, stop = {**SOURCE_PARTS, **TARGET_PARTS}[part]
    _, labels = _digits()
    out = []
    for k in range(10):
        idx = np.flatnonzero(labels == k)
        idx = idx[np.random.default_rng([seed, 7919, k]).permutation(len(idx))]
        out.append(idx[int(start * len(idx)) : int(stop * len(idx))])
    return out


def digit_image(index: int) -> np.ndarray:
    """One handwritten digit, float (8, 8) in [0, 1] (1 = ink)."""
    return _digits()[0][index]


@lru_cache(maxsize=1)
def _faces() -> np.ndarray:
    from skimage.data import lfw_subset

    return lfw_subset().astype(np.float32)  # (200, 25, 25) in [0, 1]: 100 faces, then 100 non-faces


def face_indices(seed: int, part: str) -> list[np.ndarray]:
    """Indices into ``lfw_subset`` for class 0 (non-face) and 1 (face) in ``part``."""
    start, stop = FACE_PARTS[part]
    out = []
    for k, base in ((0, 100), (1, 0)):
        idx = base + np.random.default_rng([seed, 104729, k]).permutation(100)
        out.append(idx[int(start * 100) : int(stop * 100)])
    return out


def face_image(index: int) -> np.ndarray:
    return _faces()[index]


def _shrink(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    if max(h, w) <= _MAX_SIDE:
        return img
    scale = _MAX_SIDE / max(h, w)
    return resize(img, (max(1, round(w * scale)), max(1, round(h * scale))))


@lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    """A bundled photo as uint8 RGB (H, W, 3), longest side at most 512 px."""
    import skimage.data

    try:
        if name in SAMPLE_PHOTOS:
            from sklearn.datasets import load_sample_image

            img = load_sample_image(f"{name}.jpg")
        elif name == "motorcycle":
            img = skimage.data.stereo_motorcycle()[0]
        else:
            img = getattr(skimage.data, name)()
    except (AttributeError, ModuleNotFoundError, OSError) as err:
        raise DemoImageError(f"bundled photo {name!r} is not available offline: {err}") from err
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = grey_to_rgb(img)
    return _shrink(np.ascontiguousarray(img[..., :3].astype(np.uint8)))
