"""Benchmark: flattening a ~500 M-parameter checkpoint streams with bounded memory.

Builds a synthetic safetensors file (transformer-like shapes, written in blocks so building it
never holds the model in memory) under ``.work/bench_flatten/``, then measures, each in a fresh
subprocess so that every peak is clean:

* ``idle``: the interpreter with torch, zarr and the project imported (the floor);
* ``load_all``: the baseline, ``safetensors.torch.load_file`` of the whole state dict, every
  tensor touched (what a non-streaming flattener would hold at least once);
* ``flatten``: :func:`ml_core.weights.parameters.write_model_parameters` of the same file into a
  zarr group (the code path of the ``model_parameters`` asset).

Peak memory is the kernel's high-water mark of resident memory (``VmHWM``, the same as
``getrusage().ru_maxrss``), plus the peak of anonymous (non file-backed) memory sampled every
20 ms (:mod:`benchmarks.memory`, shared with :mod:`benchmarks.scale`). Printed: each peak above
``idle``, and the ratios the design asks for: flatten / load_all (should be far below 1) and
flatten / (largest tensor as float32 + one block of chunks) (about one tensor plus one chunk
block: a small constant, not growing with the model).

Run (about 1 minute and ~4 GB of free disk for the default 500 M parameters; removed after)::

    .venv/bin/python -m benchmarks.flatten_memory                # 500 M parameters, fp32
    .venv/bin/python -m benchmarks.flatten_memory --params 50e6  # a quick look
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import struct
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.memory import REPO, AnonSampler, emit, mib, peaks, run_child

logger = logging.getLogger("benchmarks.flatten_memory")

_NP_DTYPES = {"F32": np.float32, "F16": np.float16}
_WRITE_BLOCK_VALUES = 4 * 1024 * 1024


def model_shapes(n_params: float, width: int = 1280) -> dict[str, tuple[int, ...]]:
    """Transformer-like tensor shapes adding up to about ``n_params`` values (+ one int buffer)."""
    shapes: dict[str, tuple[int, ...]] = {}
    per_block = 12 * width * width + 13 * width
    n_blocks = max(1, int(n_params * 0.95) // per_block)
    for b in range(n_blocks):
        p = f"blocks.{b}."
        shapes[p + "norm1.weight"] = (width,)
        shapes[p + "norm1.bias"] = (width,)
        shapes[p + "attn.qkv.weight"] = (3 * width, width)
        shapes[p + "attn.qkv.bias"] = (3 * width,)
        shapes[p + "attn.proj.weight"] = (width, width)
        shapes[p + "attn.proj.bias"] = (width,)
        shapes[p + "norm2.weight"] = (width,)
        shapes[p + "norm2.bias"] = (width,)
        shapes[p + "mlp.fc1.weight"] = (4 * width, width)
        shapes[p + "mlp.fc1.bias"] = (4 * width,)
        shapes[p + "mlp.fc2.weight"] = (width, 4 * width)
        shapes[p + "mlp.fc2.bias"] = (width,)
    rest = max(width, int(n_params) - n_blocks * per_block)
    shapes["embed.weight"] = (rest // width, width)
    shapes["embed.position_ids"] = (1, 197)  # an integer buffer: skipped by the flattener
    return shapes


def write_synthetic_safetensors(path: Path, n_params: float, dtype: str = "F32", seed: int = 0) -> dict:
    """Write a safetensors file block by block (memory: one block of values). Returns facts."""
    shapes = model_shapes(n_params)
    header: dict[str, dict] = {}
    offset = 0
    for name, shape in shapes.items():
        tensor_dtype = "I64" if name.endswith("position_ids") else dtype
        itemsize = 8 if tensor_dtype == "I64" else np.dtype(_NP_DTYPES[dtype]).itemsize
        nbytes = int(np.prod(shape)) * itemsize
        header[name] = {"dtype": tensor_dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)  # keep the data 8-byte aligned
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(header_bytes)))
        handle.write(header_bytes)
        for name, info in header.items():
            numel = int(np.prod(info["shape"]))
            if info["dtype"] == "I64":
                handle.write(np.arange(numel, dtype=np.int64).tobytes())
                continue
            done = 0
            while done < numel:
                take = min(_WRITE_BLOCK_VALUES, numel - done)
                values = rng.standard_normal(take, dtype=np.float32) * 0.02
                handle.write(values.astype(_NP_DTYPES[dtype]).tobytes())
                done += take
    float_sizes = [int(np.prod(i["shape"])) for i in header.values() if i["dtype"] != "I64"]
    return {
        "n_params": sum(float_sizes),
        "n_tensors": len(header),
        "largest_tensor_values": max(float_sizes),
        "file_bytes": path.stat().st_size,
    }


# --- measured in a child process -------------------------------------------------------------


def _child(mode: str, path: Path, out: Path, block_rows: int, architecture: str | None = None) -> dict:
    import torch  # noqa: F401  (the same imports in every mode: a fair floor)
    import zarr  # noqa: F401

    from ml_core.weights import open_checkpoint, write_model_parameters

    sampler = AnonSampler()
    sampler.start()
    start = time.perf_counter()
    facts: dict = {}
    if mode == "load_all":
        from safetensors.torch import load_file

        state = load_file(str(path))
        facts["checksum"] = float(sum(float(t.sum()) for t in state.values() if t.is_floating_point()))
    elif mode == "flatten":  # the call of the model_parameters asset
        with open_checkpoint(path, architecture=architecture) as reader:
            summary = write_model_parameters(reader, out, block_rows=block_rows)
        facts.update(n_chunks=summary.n_chunks, total_values=summary.total_values, n_skipped=summary.n_skipped,
                     content_hash=summary.content_hash)
    seconds = time.perf_counter() - start
    return {"mode": mode, "seconds": seconds, **peaks(sampler), **facts}


def run_flatten_child(mode: str, path: Path, out: Path, block_rows: int = 64, architecture: str | None = None,
                      env: dict[str, str] | None = None) -> dict:
    """``idle``, ``load_all`` or ``flatten`` (``open_checkpoint`` + ``write_model_parameters`` of ``path``
    into the zarr group ``out``) in a fresh process: seconds, peaks (:func:`benchmarks.memory.peaks`), facts."""
    args = [mode, "--file", str(path), "--out", str(out), "--block-rows", str(block_rows)]
    if architecture:
        args += ["--architecture", architecture]
    return run_child("benchmarks.flatten_memory", args, env)


def _run_child(mode: str, path: Path, out: Path, block_rows: int) -> dict:
    return run_flatten_child(mode, path, out, block_rows, env={"OMP_NUM_THREADS": "1"})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=float, default=500e6, help="parameters of the synthetic model")
    parser.add_argument("--dtype", choices=sorted(_NP_DTYPES), default="F32", help="stored dtype of the weights")
    parser.add_argument("--block-rows", type=int, default=64, help="chunks per written block (the asset's default)")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".work" / "bench_flatten")
    parser.add_argument("--keep", action="store_true", help="keep the generated file and zarr group")
    parser.add_argument("--child", choices=("idle", "load_all", "flatten"), help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--architecture", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        emit(_child(args.child, args.file, args.out, args.block_rows, args.architecture))
        return

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    work = args.work_dir
    path = work / f"synthetic_{int(args.params / 1e6)}M_{args.dtype}.safetensors"
    out = work / "params.zarr"
    start = time.perf_counter()
    facts = write_synthetic_safetensors(path, args.params, args.dtype)
    logger.info("built %s: %s parameters in %d tensors, %s on disk (%.0f s)", path, f"{facts['n_params']:,}",
                facts["n_tensors"], mib(facts["file_bytes"]), time.perf_counter() - start)
    try:
        shutil.rmtree(out, ignore_errors=True)
        idle = _run_child("idle", path, out, args.block_rows)
        load_all = _run_child("load_all", path, out, args.block_rows)
        flatten = _run_child("flatten", path, out, args.block_rows)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    floor = idle["peak_rss_bytes"]
    floor_anon = idle["peak_anon_bytes"]
    chunk_bytes = 8192 * 4
    bound = facts["largest_tensor_values"] * 4 + args.block_rows * chunk_bytes
    flat_rss = flatten["peak_rss_bytes"] - floor
    flat_anon = flatten["peak_anon_bytes"] - floor_anon
    load_rss = load_all["peak_rss_bytes"] - floor
    rows = [
        ("parameters", f"{facts['n_params']:,} ({args.dtype}, {facts['n_tensors']} tensors)"),
        ("checkpoint file", mib(facts["file_bytes"])),
        ("largest tensor as float32 + one block", f"{mib(bound)} (block = {args.block_rows} x 8192 values)"),
        ("idle interpreter (torch, zarr imported)", mib(floor)),
        ("baseline: load whole state dict, peak above idle", f"{mib(load_rss)} in {load_all['seconds']:.1f} s"),
        ("flatten to zarr, peak RSS above idle", f"{mib(flat_rss)} in {flatten['seconds']:.1f} s"),
        ("flatten to zarr, peak anonymous memory above idle", mib(flat_anon)),
        ("ratio flatten / load whole state dict", f"{flat_rss / load_rss:.3f}"),
        ("ratio flatten / (largest tensor + block)", f"{flat_rss / bound:.2f}"),
        ("flatten throughput", f"{facts['n_params'] / flatten['seconds'] / 1e6:.1f} M values/s"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        sys.stdout.write(f"{key:<{width}}  {value}\n")


if __name__ == "__main__":
    main()
