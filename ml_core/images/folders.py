"""Find and decode the images of a dataset in the torchvision ImageFolder layout.

Layout: ``<dataset>/<split>/<class>/<image>`` (images may sit in sub-folders of a class folder,
as torchvision allows). Hidden files and folders (``.DS_Store``, ``._x.jpg``) are ignored;
symbolic links are followed, but a folder reached twice (a link cycle, two links to one folder)
is read once; folders that cannot be listed are recorded in ``unreadable`` and logged.
A dataset with a single split folder uses it whatever its name (logged).

Decoding never raises for one bad file: :func:`load_rgb` returns None and logs why. Images
larger than :data:`MAX_IMAGE_PIXELS` (PIL's decompression-bomb threshold) or with a long side
more than :data:`MAX_ASPECT_RATIO` times the short one are refused from their header, before
any pixel is decoded: resizing a 1 x 50000 strip's short side to 224 would need 11 G pixels.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
PREFERRED_SPLIT = "train"
#: Largest image decoded, in pixels: PIL's default decompression-bomb limit (about 9459 x 9459).
MAX_IMAGE_PIXELS = 89_478_485
#: Largest ratio of long side to short side decoded (panoramas are ~10; a 1-pixel strip is not an image).
MAX_ASPECT_RATIO = 100.0


class ImageFolderError(ValueError):
    """The dataset folder does not have the ImageFolder layout; the message names the folder."""


@dataclass
class ImageFolderIndex:
    """The image files of one split of an ImageFolder dataset.

    ``classes`` are the sorted class-folder names; ``files[c]`` the sorted image paths of class c.
    ``n_ignored`` counts non-image files found in class folders; ``unreadable`` lists the folders
    that could not be listed, with the reason.
    """

    dataset_dir: Path
    split: str
    splits: list[str]
    classes: list[str]
    files: list[list[Path]]
    n_ignored: int = field(default=0)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.dataset_dir.name

    @property
    def n_images(self) -> int:
        return sum(len(class_files) for class_files in self.files)

    @property
    def images_per_class(self) -> list[int]:
        return [len(class_files) for class_files in self.files]

    @property
    def empty_classes(self) -> list[str]:
        """Class folders with no image file."""
        return [name for name, class_files in zip(self.classes, self.files, strict=True) if not class_files]

    def relative(self, path: Path) -> str:
        """``path`` relative to the dataset folder, POSIX style (for logs and attrs)."""
        try:
            return path.relative_to(self.dataset_dir).as_posix()
        except ValueError:
            return path.name


def _visible_subdirs(folder: Path) -> list[str]:
    try:
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as error:
        raise ImageFolderError(f"{folder}: cannot list the folder ({type(error).__name__}: {error})") from error


def _class_files(split_dir: Path, classes: list[str]) -> tuple[list[list[Path]], int, list[tuple[Path, str]]]:
    """``(files per class, non-image files ignored, unreadable folders)`` of ``<split_dir>/<class>/...``."""
    files: list[list[Path]] = []
    n_ignored = 0
    unreadable: list[tuple[Path, str]] = []

    def on_error(error: OSError) -> None:
        folder = Path(error.filename) if error.filename else split_dir
        logger.warning("%s: cannot list the folder, its images are skipped (%s)", folder, error.strerror or error)
        unreadable.append((folder, f"folder unreadable: {type(error).__name__}: {error.strerror or error}"))

    for class_name in classes:
        class_dir = split_dir / class_name
        images: list[Path] = []
        seen: set[str] = set()
        for root, dirnames, filenames in os.walk(class_dir, followlinks=True, onerror=on_error):
            real = os.path.realpath(root)
            if real in seen:  # a symlink cycle, or a second link to a folder already read
                logger.warning("%s: folder already read (symbolic link to %s), not read again", root, real)
                dirnames[:] = []
                continue
            seen.add(real)
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for filename in filenames:
                if filename.startswith("."):
                    continue
                if Path(filename).suffix.lower() in IMAGE_EXTENSIONS:
                    images.append(Path(root) / filename)
                else:
                    n_ignored += 1
        images.sort(key=lambda p: p.relative_to(class_dir).as_posix())
        if not images:
            logger.warning("%s: class folder has no image files", class_dir)
        files.append(images)

    return files, n_ignored, unreadable


def scan_image_folder(dataset_dir: Path, split: str | None = None) -> ImageFolderIndex:
    """Index ``<dataset_dir>/<split>/<class>/<image>``.

    ``split=None`` picks "train" if present, else the first split in sorted order.
    Raises :class:`ImageFolderError` naming the folder when the layout is not there.
    """
    dataset_dir = Path(dataset_dir).expanduser()
    if not dataset_dir.is_dir():
        raise ImageFolderError(f"dataset folder not found (or not a folder): {dataset_dir}")
    splits = _visible_subdirs(dataset_dir)
    if not splits:
        raise ImageFolderError(
            f"{dataset_dir}: no split folders; expected <dataset>/<split>/<class>/<image>"
        )
    if split is None:
        split = PREFERRED_SPLIT if PREFERRED_SPLIT in splits else splits[0]
    elif split not in splits and len(splits) == 1:
        logger.warning("%s: no split %r; using the only split, %r", dataset_dir, split, splits[0])
        split = splits[0]
    elif split not in splits:
        raise ImageFolderError(f"{dataset_dir}: no split {split!r}; available splits: {splits}")
    split_dir = dataset_dir / split
    classes = _visible_subdirs(split_dir)
    if not classes:
        raise ImageFolderError(
            f"{split_dir}: no class folders; expected <dataset>/<split>/<class>/<image>"
        )

    files, n_ignored, unreadable = _class_files(split_dir, classes)
    index = ImageFolderIndex(dataset_dir, split, splits, classes, files, n_ignored, unreadable)
    logger.info(
        "%s [%s]: %d classes, %d images (%d non-image files ignored)",
        dataset_dir,
        split,
        len(classes),
        index.n_images,
        n_ignored,
    )
    return index


#: The one class of a flat folder of images (no labels).
UNLABELLED = "(unlabelled)"


def _image_files(folder: Path) -> list[Path]:
    """The visible image files directly in ``folder``, sorted."""
    try:
        return sorted(p for p in folder.iterdir()
                      if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS)
    except OSError as error:
        raise ImageFolderError(f"{folder}: cannot list the folder ({type(error).__name__}: {error})") from error


def scan_any_image_folder(folder: Path, split: str | None = None) -> tuple[ImageFolderIndex, bool]:
    """``(index, labelled)`` of a folder a user points at, in any of three layouts:

    * a flat folder of images ``<folder>/<image>``: one class, :data:`UNLABELLED` (``labelled`` False);
    * class folders ``<folder>/<class>/<image>`` (torchvision's ImageFolder root): split ``"."``;
    * a dataset ``<folder>/<split>/<class>/<image>`` (:func:`scan_image_folder`, ``split`` as there).

    ``labelled`` is True when at least two classes have images. Raises :class:`ImageFolderError` naming
    the folder when it is missing, empty or holds no image.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ImageFolderError(f"{folder}: no such folder")
    flat = _image_files(folder)
    subdirs = _visible_subdirs(folder)
    if flat:
        if subdirs:
            logger.warning("%s: images at the top level: read as one flat folder, sub-folders %s ignored",
                           folder, subdirs[:5])
        index = ImageFolderIndex(folder, ".", ["."], [UNLABELLED], [flat])
    elif not subdirs:
        raise ImageFolderError(f"{folder}: empty folder: no images and no class or split folders")
    elif not any(p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.rglob("*")):
        raise ImageFolderError(f"{folder}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in it or its sub-folders")
    elif any(_image_files(folder / name) for name in subdirs):
        files, n_ignored, unreadable = _class_files(folder, subdirs)
        index = ImageFolderIndex(folder, ".", ["."], subdirs, files, n_ignored, unreadable)
    else:
        index = scan_image_folder(folder, split)
    if index.n_images == 0:
        raise ImageFolderError(f"{index.dataset_dir / index.split}: no image files in its class folders {index.classes[:5]}; "
                               "layouts read: <folder>/<image>, <folder>/<class>/<image>, <folder>/<split>/<class>/<image>")
    labelled = index.classes != [UNLABELLED] and sum(n > 0 for n in index.images_per_class) >= 2
    return index, labelled


def size_problem(width: int, height: int, max_pixels: int | None, max_aspect_ratio: float | None) -> str | None:
    """Why an image of ``width`` x ``height`` must not be decoded, or None if it may."""
    if width < 1 or height < 1:
        return f"empty image ({width} x {height} pixels)"
    if max_pixels is not None and width * height > max_pixels:
        return (f"image too large: {width} x {height} = {width * height:,} pixels > {max_pixels:,} "
                f"(decompression-bomb guard)")
    ratio = max(width, height) / min(width, height)
    if max_aspect_ratio is not None and ratio > max_aspect_ratio:
        return f"extreme aspect ratio: {width} x {height} pixels ({ratio:.0f}:1 > {max_aspect_ratio:g}:1)"
    return None


def load_rgb_with_reason(
    path: Path,
    *,
    max_pixels: int | None = MAX_IMAGE_PIXELS,
    max_aspect_ratio: float | None = MAX_ASPECT_RATIO,
) -> tuple[Image.Image | None, str | None]:
    """(RGB image, None), or (None, reason) when ``path`` cannot be decoded. Never raises.

    A truncated file is unreadable (unless the caller set PIL's LOAD_TRUNCATED_IMAGES). The size
    is checked from the header (see :func:`size_problem`) before any pixel is decoded.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # palette-transparency and EXIF chatter
            with Image.open(path) as image:
                problem = size_problem(image.width, image.height, max_pixels, max_aspect_ratio)
                if problem is not None:
                    return None, problem
                image.load()
                image = ImageOps.exif_transpose(image) or image
                return _to_rgb(image), None
    except Exception as error:  # one bad file must never stop a dataset
        return None, f"{type(error).__name__}: {error}"


def load_rgb(path: Path) -> Image.Image | None:
    """Open ``path`` as an 8-bit RGB image, or return None (with a warning) if it is unreadable.

    Handles grayscale, RGBA/LA (alpha dropped, as torchvision's loader does), palette, 16-bit
    and 32-bit integer / float grayscale (rescaled to 8 bits) and CMYK.
    """
    image, reason = load_rgb_with_reason(path)
    if image is None:
        logger.warning("skipping unreadable image %s: %s", path, reason)
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image.copy()
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(image), image.mode), mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def _to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Rescale a high-bit-depth grayscale array to uint8 (16-bit range, or min-max for float)."""
    values = values.astype(np.float64)
    if mode == "F":
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
        return np.nan_to_num(scaled * 255.0).round().clip(0, 255).astype(np.uint8)
    if mode.startswith("I;16") or values.max(initial=0) > 255:
        values = values / 257.0  # 65535 -> 255
    return values.round().clip(0, 255).astype(np.uint8)
