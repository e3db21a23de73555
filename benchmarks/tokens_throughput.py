"""Dataset-token throughput and memory against the bare encoder, on the same images.

Baseline: the image encoder's forward pass alone on already decoded and preprocessed batches of the
images (batches of the sizes the writer makes; two distinct ones in memory, cycled), in a fresh
process, once before and once after the measured run (their mean is the baseline). Measured:
`write_dataset_tokens` end to end (scan, decode + preprocess in decoding workers one batch ahead
of the encoder, encode, zarr shards), in a fresh process. Both load the encoder the same way and
are warmed up with one batch first. Prints images/s and the ratio (DESIGN budget: >= 90 %), then
the peak memory (max RSS of the writing process, and of its largest decoding worker) of writing
tokens for N and 10 N images (budget: flat, ratio <= 1.1).

Two cases:

* default: generated 32x32 PNGs, the demo's EfficientNet-Lite0 (real ImageNet weights) at 64 px;
* ``--photos --encoder vit-b-32``: the real-resolution case. Photo-like images (random crops and
  rescales, to 300-800 px a side, of the photos that ship offline in scikit-image and
  scikit-learn, saved as JPEG / PNG / WebP) in an ImageFolder layout, and open_clip ViT-B-32 at
  224 px whose weights are RANDOM (no CLIP weights offline): a STAND-IN, built with
  ``pretrained=None``, saved to a local .safetensors file and loaded from it as a user's local
  weights are. Its speed does not depend on the values of its weights; its features mean nothing.

Images (and the stand-in weights) are written under ``.work/`` and deleted afterwards.

    .venv/bin/python -m benchmarks.tokens_throughput --images 2000
    .venv/bin/python -m benchmarks.tokens_throughput --photos --encoder vit-b-32 --images 1000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ml_core.images import (
    ImageEncoderSpec,
    TokenWriterConfig,
    load_image_encoder,
    load_rgb,
    scan_image_folder,
    write_dataset_tokens,
)
from ml_core.images.encoders import STANDIN_METADATA_KEY
from ml_core.images.tokens import decode_workers, plan_rows
from ml_core.progress import progress

ROOT = Path(__file__).resolve().parents[1]
WORK_DIR = ROOT / ".work"
ENCODERS = ("efficientnet-lite0", "vit-b-32")
STANDIN_NOTE = "STAND-IN: open_clip ViT-B-32 with RANDOM weights (not CLIP), loaded from a local .safetensors file"

# --- photo-like images -------------------------------------------------------------------------------

#: Colour photos that ship offline: scikit-image ``skimage.data`` functions, scikit-learn sample images.
COLOR_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
                "retina", "stereo_motorcycle", "sklearn:china.jpg", "sklearn:flower.jpg")
#: Grayscale photos (saved as 8-bit grayscale, as some real datasets hold).
GRAY_PHOTOS = ("camera", "moon", "coins", "clock", "grass", "gravel", "brick")
MIN_SIDE, MAX_SIDE = 300, 800
#: Format of image i: ``FORMAT_CYCLE[i % 5]`` (60 % JPEG, 20 % PNG, 20 % WebP).
FORMAT_CYCLE = ("JPEG", "JPEG", "JPEG", "PNG", "WEBP")
SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}


def _load_photo(name: str) -> np.ndarray | None:
    """The photo as uint8 (H, W, 3) or (H, W); None if this installation cannot give it offline."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if name.startswith("sklearn:"):
                from sklearn.datasets import load_sample_image

                pixels = load_sample_image(name.split(":", 1)[1])
            else:
                import skimage.data

                pixels = getattr(skimage.data, name)()
    except Exception:  # a photo that needs a download in this scikit-image version
        return None
    if isinstance(pixels, tuple):  # stereo_motorcycle: (left, right, disparity)
        pixels = pixels[0]
    pixels = np.asarray(pixels)
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = pixels[..., :3]
    return pixels.astype(np.uint8)


@lru_cache(maxsize=1)
def source_photos() -> tuple[tuple[str, np.ndarray], ...]:
    """(name, pixels) of every offline photo available here (at least the scikit-learn two)."""
    photos = tuple((name, pixels) for name in COLOR_PHOTOS + GRAY_PHOTOS
                   if (pixels := _load_photo(name)) is not None)
    if not photos:
        raise RuntimeError("no offline photo found in scikit-image or scikit-learn")
    return photos


def photo_like_image(index: int, seed: int = 0) -> tuple[Image.Image, str]:
    """Image ``index``: a random crop of an offline photo, rescaled so both sides are in 300-800 px,
    maybe mirrored; and its format. Depends only on (seed, index)."""
    rng = np.random.default_rng([seed, index])
    photos = source_photos()
    _, pixels = photos[int(rng.integers(len(photos)))]
    height, width = pixels.shape[:2]
    aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))  # width / height of the crop
    area = rng.uniform(0.25, 1.0) * height * width
    crop_w = int(min(width, max(16, round(np.sqrt(area * aspect)))))
    crop_h = int(min(height, max(16, round(np.sqrt(area / aspect)))))
    top, left = int(rng.integers(height - crop_h + 1)), int(rng.integers(width - crop_w + 1))
    crop = Image.fromarray(pixels[top : top + crop_h, left : left + crop_w])
    long_side = int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
    short_side = int(np.clip(round(long_side * min(crop_w, crop_h) / max(crop_w, crop_h)), MIN_SIDE, MAX_SIDE))
    size = (long_side, short_side) if crop_w >= crop_h else (short_side, long_side)
    image = crop.resize(size, Image.Resampling.LANCZOS)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image, FORMAT_CYCLE[index % len(FORMAT_CYCLE)]


def _save_photo(task: tuple[Path, int, int]) -> int:
    folder, index, seed = task
    image, image_format = photo_like_image(index, seed)
    options = {"JPEG": {"quality": 90}, "PNG": {}, "WEBP": {"quality": 85}}[image_format]
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    (folder / f"{index:06d}{SUFFIX[image_format]}").write_bytes(buffer.getvalue())
    return len(buffer.getvalue())


def make_photo_folder(root: Path, n_images: int, n_classes: int = 10, seed: int = 0,
                      workers: int | None = None) -> Path:
    """``root/train/class<k>/<i>.<jpg|png|webp>``: ``n_images`` photo-like images, image i in class
    i % n_classes, written by ``workers`` processes (default: every CPU). Same arguments, same bytes."""
    folders = [root / "train" / f"class{k:02d}" for k in range(n_classes)]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    tasks = [(folders[i % n_classes], i, seed) for i in range(n_images)]
    workers = workers if workers is not None else len(os.sched_getaffinity(0))
    bar = progress(total=n_images, desc=f"photo-like images -> {root.name}", unit="img")
    with bar:
        if workers <= 1:
            for task in tasks:
                _save_photo(task)
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for _ in pool.map(_save_photo, tasks, chunksize=16):
                    bar.update(1)
    return root


def make_folder(root: Path, n_images: int, n_classes: int = 10) -> Path:
    """The original case: ``n_images`` random 32x32 PNGs."""
    rng = np.random.default_rng(0)
    for i in range(n_images):
        folder = root / "train" / f"class{i % n_classes}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:06d}.png")
    return root


# --- encoders ----------------------------------------------------------------------------------------


def write_vit_b_32_standin(path: Path, seed: int = 0) -> Path:
    """open_clip ViT-B-32 built with ``pretrained=None`` (seeded random weights), saved as .safetensors
    with the ``standin=true`` metadata the encoder code reads (its description then says STAND-IN)."""
    import open_clip
    from safetensors.torch import save_file

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model("ViT-B-32", pretrained=None)
    state = {name: tensor.detach().contiguous().clone() for name, tensor in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={STANDIN_METADATA_KEY: "true"})
    return path


def encoder_spec(name: str, weights_dir: Path, image_size: int, precision: str) -> ImageEncoderSpec:
    if name == "vit-b-32":
        weights = weights_dir / "vit-b-32-random-standin.safetensors"
        if not weights.is_file():
            write_vit_b_32_standin(weights)
        return ImageEncoderSpec(architecture="ViT-B-32", pretrained=str(weights), precision=precision)
    return ImageEncoderSpec(kind="efficientnet_lite0", architecture="efficientnet-lite0", pretrained="imagenet",
                            image_size=image_size, precision=precision)


# --- measuring ---------------------------------------------------------------------------------------


def preprocessed_batches(folder: Path, preprocess: Callable, batch_size: int, limit: int | None = None
                         ) -> list[torch.Tensor]:
    """The writer's first batches of ``folder`` (its plan order; ``limit`` images), decoded and
    preprocessed in this process."""
    index = scan_image_folder(folder, "train")
    columns = plan_rows(index, TokenWriterConfig(max_rows=None))
    paths = [files[row] for row in range(max(map(len, columns))) for files in columns if row < len(files)]
    paths = paths[:limit] if limit is not None else paths
    tensors = [preprocess(load_rgb(path)) for path in progress(paths, desc="preprocess (baseline)", unit="img")]
    return [torch.stack(tensors[i : i + batch_size]) for i in range(0, len(tensors), batch_size)]


def bare_encoder_rate(encode: Callable[[torch.Tensor], torch.Tensor], batches: list[torch.Tensor],
                      n_images: int | None = None) -> float:
    """Images/s of ``encode`` alone on batches of the sizes the writer makes for ``n_images`` images
    (default: those of ``batches``), cycling through ``batches``, after one warm-up batch."""
    batch_size = len(batches[0])
    n_images = n_images if n_images is not None else sum(len(b) for b in batches)
    sizes = [min(batch_size, n_images - i) for i in range(0, n_images, batch_size)]
    encode(batches[0])
    start = time.perf_counter()
    for k, size in enumerate(progress(sizes, desc="bare encoder", unit="batch")):
        encode(batches[k % len(batches)][:size])
    return n_images / (time.perf_counter() - start)


#: Distinct preprocessed batches the baseline cycles through: about what the writer holds at once.
BASELINE_BATCHES = 2


def child_bare(spec_json: str, folder: str, batch_size: str) -> None:
    """The bare encoder in this (fresh) process, as the writer's process runs it: same encoder loading,
    same warm-up, batches of the same sizes, two of them in memory (not all N: a heap holding N
    preprocessed images makes the allocator's page faults, and the encoder, faster than in the writer)."""
    spec = ImageEncoderSpec(**json.loads(spec_json))
    encoder = load_image_encoder(spec)
    n_images = scan_image_folder(Path(folder), "train").n_images
    encoder.encode(torch.zeros(int(batch_size), 3, *encoder.image_size))  # warm-up, as the writer's
    batches = preprocessed_batches(Path(folder), encoder.preprocess, int(batch_size), BASELINE_BATCHES * int(batch_size))
    rate = bare_encoder_rate(encoder.encode, batches, n_images)
    sys.stdout.write(json.dumps({"rate": rate, "images": n_images, "standin": encoder.describe().get("standin")}) + "\n")


def child(spec_json: str, folder: str, out: str, config_json: str) -> None:
    """Write tokens in this (fresh) process; report seconds, max RSS, and its decoding workers' max RSS."""
    spec = ImageEncoderSpec(**json.loads(spec_json))
    config = TokenWriterConfig(**json.loads(config_json))
    encoder = load_image_encoder(spec)
    index = scan_image_folder(Path(folder), "train")
    encoder.encode(torch.zeros(config.batch_size, 3, *encoder.image_size))  # warm-up, as the baseline's
    start = time.perf_counter()
    summary = write_dataset_tokens(index, encoder, Path(out), config)
    seconds = time.perf_counter() - start
    sys.stdout.write(json.dumps({
        "seconds": seconds, "images": index.n_images, "valid": summary.n_valid,
        "workers": decode_workers(config, index.n_images), "standin": encoder.describe().get("standin"),
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "workers_max_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }) + "\n")


def run_child(*args: str) -> dict:
    """``child`` (4 arguments) or ``child_bare`` (3) in a fresh process; its JSON report."""
    flag = "--child" if len(args) == 4 else "--child-bare"
    command = [sys.executable, "-m", "benchmarks.tokens_throughput", flag, *args]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "TQDM_DISABLE": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="N: images of the throughput run")
    parser.add_argument("--encoder", choices=ENCODERS, default="efficientnet-lite0")
    parser.add_argument("--photos", action="store_true",
                        help="photo-like JPEG/PNG/WebP images of 300-800 px instead of 32x32 PNGs")
    parser.add_argument("--image-size", type=int, default=None,
                        help="EfficientNet-Lite0 input side (default 64 on 32x32 PNGs, 224 on photos)")
    parser.add_argument("--workers", type=int, default=None,
                        help="decoding workers of the token writer (default: the writer's automatic choice)")
    parser.add_argument("--decode-in", choices=("process", "thread"), default=TokenWriterConfig.decode_in,
                        help="where images are decoded (default: the token writer's)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--memory-scale", type=int, default=10,
                        help="peak memory for N and this many times N images (0: skip)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--child-bare", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.child_bare:
        child_bare(*args.child_bare)
        return

    image_size = args.image_size or (224 if args.photos else 64)
    config = TokenWriterConfig(max_rows=None, batch_size=args.batch_size, num_workers=args.workers,
                               decode_in=args.decode_in)
    make = ((lambda root, n: make_photo_folder(root, n, args.classes)) if args.photos
            else (lambda root, n: make_folder(root, n, args.classes)))
    WORK_DIR.mkdir(exist_ok=True)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=WORK_DIR, prefix="tokens_throughput-") as tmp:
        spec = encoder_spec(args.encoder, Path(tmp), image_size, args.precision)
        spec_json, config_json = json.dumps(asdict(spec)), json.dumps(asdict(config))
        small = make(Path(tmp) / "small", args.images)
        bare_before = run_child(spec_json, str(small), str(args.batch_size))["rate"]
        small_run = run_child(spec_json, str(small), str(Path(tmp) / "t_small"), config_json)
        bare_after = run_child(spec_json, str(small), str(args.batch_size))
        large_run = None
        if args.memory_scale > 0:
            large = make(Path(tmp) / "large", args.memory_scale * args.images)
            large_run = run_child(spec_json, str(large), str(Path(tmp) / "t_large"), config_json)

    standin = bare_after["standin"]
    bare_after = bare_after["rate"]
    bare = (bare_before + bare_after) / 2
    tokens = small_run["images"] / small_run["seconds"]
    if args.encoder == "vit-b-32":
        what = f"{STANDIN_NOTE}, 224 px"
        assert standin and small_run["standin"], "the ViT-B-32 stand-in must be labelled STAND-IN"
    else:
        what = f"EfficientNet-Lite0 (ImageNet weights) at {image_size} px"
    where = {"process": "processes", "thread": "threads"}[args.decode_in] if small_run["workers"] else "none: serial"
    images = ("photo-like JPEG/PNG/WebP images of 300-800 px (crops and rescales of the offline scikit-image / "
              "scikit-learn photos)" if args.photos else "generated 32x32 PNGs")
    print(f"{what}, {args.precision}, on {images}; batch {args.batch_size}, torch threads {torch.get_num_threads()}, "
          f"decoding workers {small_run['workers']} ({where}), {len(os.sched_getaffinity(0))} CPUs "
          f"(load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f})")
    print(f"baseline: bare encoder forward      {bare:8.2f} images/s (fresh process before {bare_before:.2f}, "
          f"after {bare_after:.2f}; {small_run['images']} images, preprocessed beforehand)")
    print(f"dataset tokens end to end           {tokens:8.2f} images/s = {tokens / bare:6.1%} of the encoder "
          f"(budget >= 90%; {small_run['valid']} of {small_run['images']} images valid)")
    if large_run is not None:
        large_rate = large_run["images"] / large_run["seconds"]
        ratio = large_run["max_rss_mib"] / small_run["max_rss_mib"]
        worker_ratio = (large_run["workers_max_rss_mib"] / small_run["workers_max_rss_mib"]
                        if small_run["workers_max_rss_mib"] else float("nan"))
        print(f"  at {large_run['images']} images                   {large_rate:8.2f} images/s = "
              f"{large_rate / bare:6.1%} of the encoder")
        print(f"peak memory (max RSS): {small_run['images']} images {small_run['max_rss_mib']:.0f} MiB, "
              f"{large_run['images']} images {large_run['max_rss_mib']:.0f} MiB "
              f"(ratio {ratio:.3f} for {args.memory_scale}x the images; budget <= 1.1)")
        print(f"  largest decoding worker: {small_run['workers_max_rss_mib']:.0f} MiB, "
              f"{large_run['workers_max_rss_mib']:.0f} MiB (ratio {worker_ratio:.3f}; forked, so it counts pages "
              f"shared with the parent)")
    if args.encoder == "vit-b-32":
        print(f"({STANDIN_NOTE}: throughput and memory are those of the real architecture; its features mean nothing)")


if __name__ == "__main__":
    main()
