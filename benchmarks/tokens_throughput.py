"""Dataset-token throughput and memory against the bare encoder, on the same images.

Baseline: the image encoder's forward pass alone on already decoded and preprocessed batches.
Measured: `write_dataset_tokens` end to end (scan, decode, preprocess, encode, zarr shards).
Prints images/s and the ratio (DESIGN budget: >= 90 %), then the peak memory (max RSS of a fresh
process) of writing tokens for N and 10 N images (budget: flat). Images are generated 32x32 PNGs
(a stand-in); the encoder is the demo's real EfficientNet-Lite0 (ImageNet weights, 64 px).

    .venv/bin/python -m benchmarks.tokens_throughput --images 2000
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
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

SPEC = dict(kind="efficientnet_lite0", architecture="efficientnet-lite0", pretrained="imagenet", image_size=64)


def make_folder(root: Path, n_images: int, n_classes: int = 10) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n_images):
        folder = root / "train" / f"class{i % n_classes}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:06d}.png")
    return root


def child(folder: str, out: str, workers: int) -> None:
    """Write tokens in this (fresh) process and report seconds and max RSS."""
    encoder = load_image_encoder(ImageEncoderSpec(**SPEC))
    index = scan_image_folder(Path(folder), "train")
    start = time.perf_counter()
    write_dataset_tokens(index, encoder, Path(out), TokenWriterConfig(max_rows=None, num_workers=workers))
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "images": index.n_images,
                      "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_child(folder: Path, out: Path, workers: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", str(folder), str(out), str(workers)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1, help="decoding threads of the token writer")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        small = make_folder(Path(tmp) / "small", args.images)
        large = make_folder(Path(tmp) / "large", 10 * args.images)
        encoder = load_image_encoder(ImageEncoderSpec(**SPEC))
        index = scan_image_folder(small, "train")
        batch = torch.stack([encoder.preprocess(load_rgb(p)) for files in index.files for p in files[:7]][:64])
        encoder.encode(batch)  # warm-up
        start = time.perf_counter()
        for _ in range(-(-args.images // len(batch))):
            encoder.encode(batch)
        bare = len(batch) * -(-args.images // len(batch)) / (time.perf_counter() - start)
        small_run = run_child(small, Path(tmp) / "t_small", args.workers)
        large_run = run_child(large, Path(tmp) / "t_large", args.workers)
    tokens = small_run["images"] / small_run["seconds"]
    print(f"EfficientNet-Lite0 at 64 px on generated 32x32 PNGs, torch threads {torch.get_num_threads()}, "
          f"decoding workers {args.workers}; this CPU")
    print(f"baseline: bare encoder forward      {bare:8.1f} images/s")
    print(f"dataset tokens end to end           {tokens:8.1f} images/s = {tokens / bare:6.1%} of the encoder "
          f"(budget >= 90%)")
    print(f"peak memory: {small_run['images']} images {small_run['max_rss_mib']:.0f} MiB, "
          f"{large_run['images']} images {large_run['max_rss_mib']:.0f} MiB "
          f"(ratio {large_run['max_rss_mib'] / small_run['max_rss_mib']:.2f} for 10x the images; budget: flat)")


if __name__ == "__main__":
    main()
