"""Cost that grows gently: real-size architectures and zoos of 10 to 100 models (issue #17, item 3).

STAND-IN weights: every checkpoint is a real timm architecture built with ``pretrained=False``
(random initialisation; nothing is downloaded), saved by this script. The costs measured here
depend on the shapes and sizes of the tensors, not on what the weights learned; the embedders'
quality is not measured (training is cut to a few steps: this measures memory and cost growth).

a. **Flattening** (the ``model_parameters`` asset's call: ``open_checkpoint`` + ``write_model_parameters``,
   in a fresh process, :func:`benchmarks.flatten_memory.run_flatten_child`) of each architecture
   saved as ``.safetensors`` and as a ``.pt`` state dict (read with ``torch.load(weights_only=True)``),
   against a plain sequential read of the same file in 1 MiB blocks (the file in page cache for both:
   it is read twice, the second read timed). Budgets (DESIGN.md): throughput >= 50% of the read on the
   largest checkpoint; peak memory about one tensor plus one chunk block: the peak above an idle
   interpreter against (largest tensor as float32 + one block of 64 chunks), <= 2x. The largest
   checkpoint is also measured cold (its pages dropped with ``posix_fadvise(DONTNEED)``, that file only)
   and with a card naming its timm architecture (``open_checkpoint(architecture=...)``: loaded whole).
b. **Embedder training** (``train_embedder``: the ``token_encoder`` default and the seed's
   ``chunk_autoencoder``) on zoos of 10, 30 and 100 models (copies of a few small architectures, each
   with its own random seed, flattened once through the project's code), each run in a fresh process:
   seconds and peak memory (``VmHWM``). Budget: peak(100) / peak(10) <= 1.2 (DESIGN: "the autoencoder
   trains from a bounded stream of sampled chunks: memory flat as the zoo grows"). The sample budgets
   are set so that the smallest zoo already fills them (``--max-total-chunks``, ``--max-total-tokens``;
   ``--budgets project`` or ``both`` trains at the project's defaults, which a 10-model zoo does not fill).
c. **Embedding** time per model (``embed``, the ``model_embeddings`` asset's call) against its size.
d. **Adding one model** to the largest zoo: its per-model stages (flatten + embed with the default
   token encoder) against those of every model of the zoo; the embedder is NOT retrained when a model
   is added (training is a deliberate step). Budget: <= 1.5 / N.
e. A log-log plot of seconds against parameters (flatten, embed), ``<out>/scale_costs.png``, and
   every figure in ``<out>/scale.json``.

Run (checkpoints and zarr groups go to ``<out>/tmp`` and are deleted after; ``--keep`` keeps them)::

    .venv/bin/python -m benchmarks.scale --quick   # 2 small architectures, zoos of 10 and 30 (~2 min)
    .venv/bin/python -m benchmarks.scale           # 7 architectures up to 87 M parameters, zoos 10/30/100
    .venv/bin/python -m benchmarks.scale --budgets both   # and at the project's budgets (~11 min, 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.flatten_memory import run_flatten_child
from benchmarks.memory import REPO, AnonSampler, emit, mib, peaks, run_child
from ml_core.progress import progress
from ml_core.weights import (
    ParametersSummary,
    WeightEmbedderConfig,
    embed,
    load_embedder,
    open_checkpoint,
    read_model_parameters,
    train_embedder,
    write_model_parameters,
)

STANDIN = "STAND-IN, random weights (timm pretrained=False)"
#: ~1.6 M to ~87 M parameters, smallest first
ARCHS = ("mobilenetv3_small_050", "efficientnet_b0", "resnet18", "vit_small_patch16_224", "resnet50",
         "convnext_tiny", "vit_base_patch16_224")
ZOO_ARCHS = ("mobilenetv3_small_050", "resnet10t", "efficientnet_b0")
ZOOS = (10, 30, 100)
QUICK_ARCHS = ("mobilenetv3_small_050", "resnet18")
QUICK_ZOO_ARCHS = ("mobilenetv3_small_050", "resnet10t")
QUICK_ZOOS = (10, 30)
FORMATS = (".safetensors", ".pt")
METHODS = ("token_encoder", "chunk_autoencoder")
BLOCK_ROWS = 64  # the FlattenConfig default: chunks per written block
CHUNK_SIZE = 8192
READ_BLOCK = 1 << 20
#: budgets (DESIGN.md "Performance budgets"; the flatten memory bound read as "about": <= 2x)
FLATTEN_THROUGHPUT_MIN = 0.5
FLATTEN_MEMORY_MAX = 2.0
TRAIN_PEAK_GROWTH_MAX = 1.2
ADD_ONE_FACTOR = 1.5


# --- the measurements (pure functions the tests call) -----------------------------------------


def build_standin(architecture: str, seed: int) -> dict[str, torch.Tensor]:
    """The state dict of timm ``architecture`` with random weights (``pretrained=False``), seeded."""
    import timm

    torch.manual_seed(seed)
    model = timm.create_model(architecture, pretrained=False)
    return {name: tensor.detach().clone().contiguous() for name, tensor in model.state_dict().items()}


def float_values(state: dict[str, torch.Tensor]) -> int:
    """Values of the floating-point tensors: what flattening keeps (integer buffers are skipped)."""
    return sum(t.numel() for t in state.values() if t.is_floating_point())


def largest_float_tensor(state: dict[str, torch.Tensor]) -> int:
    return max(t.numel() for t in state.values() if t.is_floating_point())


def save_checkpoint(state: dict[str, torch.Tensor], path: Path) -> Path:
    """``.safetensors`` (safetensors) or ``.pt`` / ``.pth`` (a plain ``torch.save`` of the state dict)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def sequential_read_seconds(path: Path, repeats: int = 2, block: int = READ_BLOCK) -> float:
    """Seconds of a plain read of ``path`` in ``block``-byte reads; read ``repeats`` times (the first
    brings it into the page cache), the last timed."""
    buffer = bytearray(block)
    view = memoryview(buffer)
    seconds = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        with path.open("rb", buffering=0) as handle:
            while handle.readinto(view):
                pass
        seconds = time.perf_counter() - start
    return seconds


def evict_from_page_cache(path: Path) -> None:
    """Drop ``path``'s pages from the page cache (``posix_fadvise(DONTNEED)`` on that file only, after
    an fsync), so that its next read comes from the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def flatten_in_process(path: Path, out: Path, architecture: str | None = None) -> tuple[float, ParametersSummary]:
    """The ``model_parameters`` asset's call on ``path`` into the zarr group ``out``: (seconds, summary)."""
    start = time.perf_counter()
    with open_checkpoint(path, architecture=architecture) as reader:
        summary = write_model_parameters(reader, out, chunk_size=CHUNK_SIZE, block_rows=BLOCK_ROWS,
                                         source={"file": path.name})
    return time.perf_counter() - start, summary


def throughput_ratio(read_seconds: float, flatten_seconds: float) -> float:
    """Flattening's throughput over the sequential read's, on the same bytes: read s / flatten s."""
    return read_seconds / flatten_seconds


def memory_bound(largest_tensor_values: int, block_rows: int = BLOCK_ROWS, chunk_size: int = CHUNK_SIZE) -> int:
    """Bytes of the largest tensor as float32 plus one block of chunks: what streaming should hold."""
    return 4 * largest_tensor_values + 4 * block_rows * chunk_size


def add_one_ratio(per_model_seconds: list[float], new_model_seconds: float) -> float:
    """The per-model stages of one new model over those of the whole zoo."""
    return new_model_seconds / sum(per_model_seconds)


def growth_exponent(sizes: list[float], seconds: list[float]) -> float:
    """Slope of log(seconds) against log(size) (least squares): 1 = cost proportional to size."""
    if len(sizes) < 2:
        return float("nan")
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


@dataclass
class ZooModel:
    name: str
    architecture: str
    seed: int
    n_values: int
    n_chunks: int
    flatten_seconds: float
    params_dir: str


def build_zoo_model(index: int, architectures: tuple[str, ...], work: Path) -> ZooModel:
    """Zoo model ``index``: architecture ``index mod len``, seed ``1000 + index``, saved as safetensors,
    flattened (timed) into ``work/zoo/<name>``; the checkpoint is deleted after."""
    architecture = architectures[index % len(architectures)]
    name = f"zoo{index:03d}_{architecture}"
    seed = 1000 + index
    path = save_checkpoint(build_standin(architecture, seed), work / "zoo_checkpoints" / f"{name}.safetensors")
    seconds, summary = flatten_in_process(path, work / "zoo" / name)
    path.unlink()
    return ZooModel(name, architecture, seed, summary.total_values, summary.n_chunks, seconds, str(work / "zoo" / name))


def embedder_config(method: str, epochs: int, max_total_chunks: int | None, max_total_tokens: int | None) -> dict:
    """The run's changes to :class:`WeightEmbedderConfig` (a few steps; the sample budgets)."""
    tokens: dict[str, Any] = {"trainer": {"epochs": epochs, "early_stopping_patience": None}, "steps_per_epoch": 10,
                              "val_steps": 2}
    chunks: dict[str, Any] = {"trainer": {"epochs": epochs, "early_stopping_patience": None, "scheduler": "none"}}
    if max_total_tokens:
        tokens["max_total_tokens"] = max_total_tokens
    if max_total_chunks:
        chunks["max_total_chunks"] = max_total_chunks
    return {"method": method, "tokens": tokens, "chunks": chunks}


def train_measure(params_dirs: list[str], changes: dict, save: Path | None = None) -> dict:
    """Train the embedder ``changes`` configures on the flattened models ``params_dirs`` (this process):
    seconds (reading, sampling and training), the sample size and peak memory."""
    from ml_core.configs import replace_nested

    config = replace_nested(WeightEmbedderConfig(), changes)
    sampler = AnonSampler()
    sampler.start()
    start = time.perf_counter()
    models = {Path(d).name: read_model_parameters(d) for d in params_dirs}
    artifact, history = train_embedder(models, config)
    seconds = time.perf_counter() - start
    info = artifact.info
    if save is not None:
        artifact.save(save)
    sample = info.get("n_train_tokens", info.get("n_train_chunks", 0)) + info.get("n_val_chunks", 0)
    unit = "tokens (train)" if "n_train_tokens" in info else "chunks (train + val)"
    return {"method": config.method, "n_models": len(models), "seconds": seconds, "sample": int(sample),
            "sample_unit": unit, "epochs": len(history.epochs), **peaks(sampler)}


def embed_seconds(params_dir: str, embedder: Any) -> tuple[float, int]:
    """Seconds of the ``model_embeddings`` asset's call on one flattened model; its number of pieces."""
    start = time.perf_counter()
    embedding = embed(read_model_parameters(params_dir), embedder)
    return time.perf_counter() - start, int(embedding.codes.shape[0])


# --- the child processes -----------------------------------------------------------------------


def _child(args: argparse.Namespace) -> None:
    if args.child == "idle":  # the same imports as a training child: the floor
        emit({"mode": "idle", **peaks(_started(AnonSampler()))})
    else:
        dirs = json.loads(Path(args.models_file).read_text())
        emit(train_measure(dirs, json.loads(args.config), Path(args.save) if args.save else None))


def _started(sampler: AnonSampler) -> AnonSampler:
    sampler.start()
    return sampler


def slug(label: str) -> str:
    """A folder name for a setting's label."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_")


def _train_child(dirs: list[str], changes: dict, save: Path, work: Path) -> dict:
    models_file = work / f"models_{len(dirs)}.json"
    models_file.write_text(json.dumps(dirs))
    return run_child("benchmarks.scale", ["train", "--models-file", str(models_file), "--config", json.dumps(changes),
                                          "--save", str(save)])


# --- the run -------------------------------------------------------------------------------------


def _say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _table(header: tuple[str, ...], rows: list[tuple]) -> None:
    cells = [tuple(str(c) for c in header)] + [tuple(str(c) for c in row) for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for k, row in enumerate(cells):
        _say("  ".join(c.rjust(w) if k and i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if k == 0:
            _say("  ".join("-" * w for w in widths))


def measure_flatten(archs: tuple[str, ...], formats: tuple[str, ...], work: Path, idle: dict) -> list[dict]:
    """Section a: one row per (architecture, format); keeps the safetensors zarr groups for section c."""
    rows = []
    floor_hwm, floor_anon = idle["peak_hwm_bytes"], idle["peak_anon_bytes"]
    for arch in progress(archs, desc="flatten"):
        state = build_standin(arch, 0)
        n_values, largest = float_values(state), largest_float_tensor(state)
        paths = [save_checkpoint(state, work / "checkpoints" / f"{arch}{fmt}") for fmt in formats]
        del state
        for path in paths:
            out = work / "scale" / f"{arch}{path.suffix.replace('.', '_')}"
            read_s = sequential_read_seconds(path)
            child = run_flatten_child("flatten", path, out, BLOCK_ROWS)
            if child["total_values"] != n_values:
                raise RuntimeError(f"{path}: flattened {child['total_values']} values, the model has {n_values}")
            bound = memory_bound(largest)
            rows.append({
                "architecture": arch, "format": path.suffix, "n_values": n_values, "n_chunks": child["n_chunks"],
                "file_bytes": path.stat().st_size, "largest_tensor": largest, "read_seconds": read_s,
                "flatten_seconds": child["seconds"], "throughput_ratio": throughput_ratio(read_s, child["seconds"]),
                "peak_hwm_above_idle": child["peak_hwm_bytes"] - floor_hwm,
                "peak_anon_above_idle": child["peak_anon_bytes"] - floor_anon, "bound_bytes": bound,
                "memory_ratio": (child["peak_hwm_bytes"] - floor_hwm) / bound,
                "anon_memory_ratio": (child["peak_anon_bytes"] - floor_anon) / bound,
                "params_dir": str(out), "content_hash": child["content_hash"],
            })
            if path.suffix != ".safetensors":
                shutil.rmtree(out, ignore_errors=True)
        if arch == archs[-1]:  # cold: the file's pages dropped before the read and before the flatten
            for path, row in zip(paths, rows[-len(paths):], strict=True):
                evict_from_page_cache(path)
                row["cold_read_seconds"] = sequential_read_seconds(path, repeats=1)
                evict_from_page_cache(path)
                cold = run_flatten_child("flatten", path, work / "scale" / "cold", BLOCK_ROWS)
                row["cold_flatten_seconds"] = cold["seconds"]
                shutil.rmtree(work / "scale" / "cold", ignore_errors=True)
            # a card naming the architecture: the file is loaded strictly into it first
            path = paths[0]
            child = run_flatten_child("flatten", path, work / "scale" / "checked", BLOCK_ROWS,
                                      architecture=f"timm:{arch}")
            base = {k: v for k, v in rows[-len(paths)].items() if not k.startswith("cold_")}
            rows.append({**base, "format": path.suffix + " +timm card", "flatten_seconds": child["seconds"],
                         "throughput_ratio": throughput_ratio(rows[-len(paths)]["read_seconds"], child["seconds"]),
                         "peak_hwm_above_idle": child["peak_hwm_bytes"] - floor_hwm,
                         "peak_anon_above_idle": child["peak_anon_bytes"] - floor_anon,
                         "memory_ratio": (child["peak_hwm_bytes"] - floor_hwm) / rows[-len(paths)]["bound_bytes"],
                         "anon_memory_ratio": (child["peak_anon_bytes"] - floor_anon) / rows[-len(paths)]["bound_bytes"],
                         "params_dir": ""})
            shutil.rmtree(work / "scale" / "checked", ignore_errors=True)
        for path in paths:
            path.unlink()
    return rows


def measure_training(zoo: list[ZooModel], zoos: tuple[int, ...], settings: list[tuple[str, str, dict]],
                     work: Path) -> list[dict]:
    """Section b: every (setting, zoo size) in a fresh process; the artifacts of the largest zoo are kept."""
    rows = []
    for label, method, changes in progress(settings, desc="train"):
        for n in zoos:
            save = work / "embedders" / f"{slug(label)}_{n}"
            result = _train_child([m.params_dir for m in zoo[:n]], changes, save, work)
            rows.append({"setting": label, "zoo": n, "save": str(save), **result})
    return rows


def plot(out: Path, flatten_rows: list[dict], zoo: list[ZooModel], embed_rows: list[dict],
         train_rows: list[dict], idle: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    for fmt, marker in ((".safetensors", "o"), (".pt", "s")):
        rows = [r for r in flatten_rows if r["format"] == fmt]
        if rows:
            ax.scatter([r["n_values"] for r in rows], [r["flatten_seconds"] for r in rows], marker=marker,
                       label=f"flatten {fmt} (fresh process)")
    ax.scatter([m.n_values for m in zoo], [m.flatten_seconds for m in zoo], marker=".", alpha=0.4,
               label="flatten .safetensors (zoo models)")
    for method, marker in (("token_encoder", "^"), ("chunk_autoencoder", "v")):
        rows = [r for r in embed_rows if r["method"] == method]
        if rows:
            ax.scatter([r["n_values"] for r in rows], [r["seconds"] for r in rows], marker=marker,
                       label=f"embed, {method}")
    values = [r["n_values"] for r in flatten_rows] + [m.n_values for m in zoo]
    if values:
        x = np.geomspace(min(values), max(values), 10)
        ref = min(r["flatten_seconds"] for r in flatten_rows) if flatten_rows else 1.0
        ax.plot(x, ref * x / x[0], "k:", lw=0.8, label="slope 1 (cost proportional to size)")
    ax.set(xscale="log", yscale="log", xlabel="parameters (float values)", ylabel="seconds",
           title=f"cost against work ({STANDIN})")
    ax.legend(fontsize=7)
    for setting in sorted({r["setting"] for r in train_rows}):
        rows = [r for r in train_rows if r["setting"] == setting]
        ax2.plot([r["zoo"] for r in rows], [r["peak_hwm_bytes"] / 2**20 for r in rows], "o-", label=setting)
    ax2.axhline(idle["peak_hwm_bytes"] / 2**20, color="k", ls=":", lw=0.8, label="idle interpreter")
    ax2.set_xscale("log")
    ax2.set_xticks(sorted({r["zoo"] for r in train_rows}), [str(n) for n in sorted({r["zoo"] for r in train_rows})])
    ax2.minorticks_off()
    ax2.set(xlabel="models in the zoo", ylabel="peak resident memory (VmHWM), MiB",
            title="embedder training: peak memory against zoo size")
    ax2.set_ylim(bottom=0)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    path = out / "scale_costs.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _budget(met: bool) -> str:
    return "yes" if met else "NO"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"archs {QUICK_ARCHS}, zoo archs {QUICK_ZOO_ARCHS}, zoos {QUICK_ZOOS}")
    parser.add_argument("--archs", nargs="+", help=f"timm architectures to flatten and embed (default {ARCHS})")
    parser.add_argument("--zoo-archs", nargs="+", help=f"architectures the zoos cycle through (default {ZOO_ARCHS})")
    parser.add_argument("--zoos", nargs="+", type=int, help=f"zoo sizes (default {ZOOS})")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (short: cost, not quality)")
    parser.add_argument("--max-total-chunks", type=int, default=2048,
                        help="the chunk autoencoder's sample budget (project default 16384)")
    parser.add_argument("--max-total-tokens", type=int, default=81920,
                        help="the token encoder's sample budget (project default 1,048,576)")
    parser.add_argument("--budgets", choices=("bench", "project", "both"), default="bench",
                        help="train at the bench budgets above, at the project's defaults (which a 10-model zoo "
                        "does not fill), or both")
    parser.add_argument("--out", type=Path, default=REPO / ".work" / "bench_scale", help="results folder")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoints' zarr groups and embedders")
    parser.add_argument("--child", choices=("idle", "train"), help=argparse.SUPPRESS)
    parser.add_argument("--models-file", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return

    archs = tuple(args.archs or (QUICK_ARCHS if args.quick else ARCHS))
    zoo_archs = tuple(args.zoo_archs or (QUICK_ZOO_ARCHS if args.quick else ZOO_ARCHS))
    zoos = tuple(sorted(args.zoos or (QUICK_ZOOS if args.quick else ZOOS)))
    formats = tuple(args.formats)
    settings = []
    if args.budgets in ("bench", "both"):
        settings += [(f"{m} (bench budget)", m, embedder_config(m, args.epochs, args.max_total_chunks,
                                                                 args.max_total_tokens)) for m in args.methods]
    if args.budgets in ("project", "both"):
        settings += [(f"{m} (project budget)", m, embedder_config(m, args.epochs, None, None)) for m in args.methods]
    out = args.out
    work = out / "tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.perf_counter()
    _say(f"benchmarks.scale: {STANDIN}; {torch.get_num_threads()} torch threads; mode "
         f"{'quick' if args.quick else 'custom' if args.archs or args.zoos else 'full'}")
    _say(f"architectures {list(archs)}; formats {list(formats)}; zoo architectures {list(zoo_archs)}; zoos {list(zoos)}")
    try:
        results = _run(args, archs, zoo_archs, zoos, formats, settings, out, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results["wall_seconds"] = time.perf_counter() - started
    (out / "scale.json").write_text(json.dumps(results, indent=1, default=str))
    _say(f"\nfigures in {out / 'scale.json'}, plot {out / 'scale_costs.png'}; "
         f"whole run {results['wall_seconds'] / 60:.1f} min")


def _run(args: argparse.Namespace, archs: tuple[str, ...], zoo_archs: tuple[str, ...], zoos: tuple[int, ...],
         formats: tuple[str, ...], settings: list[tuple[str, str, dict]], out: Path, work: Path) -> dict:
    idle_flatten = run_flatten_child("idle", work / "none", work / "none", BLOCK_ROWS)

    # a. flattening
    flatten_rows = measure_flatten(archs, formats, work, idle_flatten)
    _say(f"\n[a] flattening (open_checkpoint + write_model_parameters, fresh process) against a sequential "
         f"1 MiB-block read of the same file, both from page cache; idle interpreter {mib(idle_flatten['peak_hwm_bytes'])}")
    _table(("architecture", "format", "params", "chunks", "file MiB", "read s", "flatten s", "flatten/read",
            "peak-idle MiB", "anon-idle MiB", "tensor+block MiB", "peak/bound"),
           [(r["architecture"], r["format"], f"{r['n_values'] / 1e6:.1f} M", r["n_chunks"], f"{r['file_bytes'] / 2**20:.0f}",
             f"{r['read_seconds']:.3f}", f"{r['flatten_seconds']:.2f}", f"{r['throughput_ratio']:.1%}",
             f"{r['peak_hwm_above_idle'] / 2**20:.0f}", f"{r['peak_anon_above_idle'] / 2**20:.0f}",
             f"{r['bound_bytes'] / 2**20:.0f}", f"{r['memory_ratio']:.2f}") for r in flatten_rows])
    _say("(peak-idle: VmHWM above the idle interpreter, file-backed pages included; anon-idle: anonymous memory only;"
         " +timm card: open_checkpoint(architecture='timm:<name>'), as for a card naming it: imports timm, loads the"
         " whole state dict)")
    cold_rows = [r for r in flatten_rows if "cold_read_seconds" in r]
    if cold_rows:
        _say("cold (the file's pages dropped with posix_fadvise(DONTNEED) before the read and before the flatten):")
        _table(("architecture", "format", "cold read s", "cold flatten s", "flatten/read"),
               [(r["architecture"], r["format"], f"{r['cold_read_seconds']:.3f}", f"{r['cold_flatten_seconds']:.2f}",
                 f"{throughput_ratio(r['cold_read_seconds'], r['cold_flatten_seconds']):.1%}") for r in cold_rows])

    # b. training on zoos
    n_zoo = max(zoos)
    zoo = [build_zoo_model(i, zoo_archs, work) for i in progress(range(n_zoo + 1), desc="zoo")]
    new_model, zoo = zoo[-1], zoo[:-1]
    idle_train = run_child("benchmarks.scale", ["idle"])
    train_rows = measure_training(zoo, zoos, settings, work)
    _say(f"\n[b] embedder training in a fresh process (few steps: cost and memory, not quality; "
         f"{args.epochs} epochs; bench budgets: {args.max_total_chunks} chunks, {args.max_total_tokens} tokens); "
         f"zoo models: {', '.join(zoo_archs)} cycled, own seeds; idle interpreter {mib(idle_train['peak_hwm_bytes'])}")
    _table(("setting", "models", "zoo params", "sample", "seconds", "peak MiB", "peak-idle MiB"),
           [(r["setting"], r["zoo"], f"{sum(m.n_values for m in zoo[:r['zoo']]) / 1e6:.0f} M",
             f"{r['sample']:,} {r['sample_unit']}", f"{r['seconds']:.1f}", f"{r['peak_hwm_bytes'] / 2**20:.0f}",
             f"{(r['peak_hwm_bytes'] - idle_train['peak_hwm_bytes']) / 2**20:.0f}") for r in train_rows])
    growth = []
    for label, _, _ in settings:
        rows = {r["zoo"]: r for r in train_rows if r["setting"] == label}
        small, large = rows[zoos[0]], rows[n_zoo]
        floor = idle_train["peak_hwm_bytes"]
        growth.append({"setting": label, "peak_ratio": large["peak_hwm_bytes"] / small["peak_hwm_bytes"],
                       "peak_above_idle_ratio": (large["peak_hwm_bytes"] - floor) / max(small["peak_hwm_bytes"] - floor, 1),
                       "time_ratio": large["seconds"] / small["seconds"]})
    _say(f"peak({n_zoo}) / peak({zoos[0]}) and time({n_zoo}) / time({zoos[0]}):")
    _table(("setting", "peak ratio", "above-idle ratio", "time ratio"),
           [(g["setting"], f"{g['peak_ratio']:.2f}", f"{g['peak_above_idle_ratio']:.2f}", f"{g['time_ratio']:.2f}")
            for g in growth])

    # c. embedding time against size
    first = {}  # each method's first setting
    for label, method, _ in settings:
        first.setdefault(method, label)
    embedders = {m: load_embedder(work / "embedders" / f"{slug(label)}_{n_zoo}") for m, label in first.items()}
    embed_rows = []
    scale_models = [r for r in flatten_rows if r["format"] == ".safetensors" and r["params_dir"]]
    for r in progress(scale_models, desc="embed"):
        for method, embedder in embedders.items():
            seconds, pieces = embed_seconds(r["params_dir"], embedder)
            embed_rows.append({"architecture": r["architecture"], "method": method, "n_values": r["n_values"],
                               "n_chunks": r["n_chunks"], "pieces": pieces, "seconds": seconds})
    _say(f"\n[c] embedding one model (embed, the model_embeddings call), embedders trained on the {n_zoo}-model zoo")
    _table(("architecture", "params", "chunks", "method", "pieces", "seconds", "ms / chunk"),
           [(r["architecture"], f"{r['n_values'] / 1e6:.1f} M", r["n_chunks"], r["method"], r["pieces"],
             f"{r['seconds']:.2f}", f"{1e3 * r['seconds'] / r['n_chunks']:.2f}") for r in embed_rows])
    exponents = {"flatten .safetensors": growth_exponent(
        [r["n_values"] for r in flatten_rows if r["format"] == ".safetensors"],
        [r["flatten_seconds"] for r in flatten_rows if r["format"] == ".safetensors"])}
    for method in embedders:
        rows = [r for r in embed_rows if r["method"] == method]
        exponents[f"embed {method}"] = growth_exponent([r["n_values"] for r in rows], [r["seconds"] for r in rows])
    _say("seconds ~ parameters^k, k fitted on the rows above: "
         + ", ".join(f"{k}: k = {v:.2f}" for k, v in exponents.items()))

    # d. one model added to the largest zoo
    default = "token_encoder" if "token_encoder" in embedders else next(iter(embedders))
    zoo_embed = [embed_seconds(m.params_dir, embedders[default])[0] for m in progress(zoo, desc="embed zoo")]
    new_embed = embed_seconds(new_model.params_dir, embedders[default])[0]
    per_model = [m.flatten_seconds + e for m, e in zip(zoo, zoo_embed, strict=True)]
    new_cost = new_model.flatten_seconds + new_embed
    ratio = add_one_ratio(per_model, new_cost)
    train_s = next(r["seconds"] for r in train_rows if r["zoo"] == n_zoo and r["setting"] == first[default])
    _say(f"\n[d] adding 1 model ({new_model.name}, {new_model.n_values / 1e6:.1f} M) to the {n_zoo}-model zoo: "
         f"flatten + embed ({default}); the embedder is NOT retrained when one model is added")
    _table(("work", "flatten s", "embed s", "total s"),
           [(f"all {n_zoo} models", f"{sum(m.flatten_seconds for m in zoo):.1f}", f"{sum(zoo_embed):.1f}", f"{sum(per_model):.1f}"),
            ("1 new model", f"{new_model.flatten_seconds:.2f}", f"{new_embed:.2f}", f"{new_cost:.2f}")])
    _say(f"ratio {ratio:.4f} (1/{n_zoo} = {1 / n_zoo:.4f}); against the full run with the embedder's training "
         f"({train_s:.1f} s, {args.epochs} epochs): {new_cost / (sum(per_model) + train_s):.4f}")

    # e. plot
    png = plot(out, flatten_rows, zoo, embed_rows, train_rows, idle_train)

    largest = next(r for r in flatten_rows if r["architecture"] == archs[-1])
    summary = []
    for r in flatten_rows:
        if r["architecture"] != archs[-1]:
            continue
        summary.append((f"flatten throughput / sequential read, {r['architecture']} {r['format']}",
                        f"{r['throughput_ratio']:.1%}", f">= {FLATTEN_THROUGHPUT_MIN:.0%}",
                        _budget(r["throughput_ratio"] >= FLATTEN_THROUGHPUT_MIN)))
        summary.append((f"flatten peak above idle / (largest tensor f32 + block), {r['architecture']} {r['format']}",
                        f"{r['memory_ratio']:.2f} (anon {r['anon_memory_ratio']:.2f})", f"<= {FLATTEN_MEMORY_MAX:.1f}",
                        _budget(r["memory_ratio"] <= FLATTEN_MEMORY_MAX)))
    for r in cold_rows:
        summary.append((f"flatten throughput / sequential read, cold, {r['architecture']} {r['format']}",
                        f"{throughput_ratio(r['cold_read_seconds'], r['cold_flatten_seconds']):.1%}", "(information)", "-"))
    streamed = [r for r in flatten_rows if r["format"] == formats[0]]
    if len(streamed) > 1:
        summary.append((f"flatten peak above idle, {streamed[0]['architecture']} -> {streamed[-1]['architecture']} "
                        f"{formats[0]} ({streamed[-1]['n_values'] / streamed[0]['n_values']:.0f}x the parameters)",
                        f"{mib(streamed[0]['peak_hwm_above_idle'])} -> {mib(streamed[-1]['peak_hwm_above_idle'])}",
                        "(information)", "-"))
    for g in growth:
        summary.append((f"training peak({n_zoo}) / peak({zoos[0]}), {g['setting']}",
                        f"{g['peak_ratio']:.2f} (above idle {g['peak_above_idle_ratio']:.2f})",
                        f"<= {TRAIN_PEAK_GROWTH_MAX}", _budget(g["peak_ratio"] <= TRAIN_PEAK_GROWTH_MAX)))
        summary.append((f"training time({n_zoo}) / time({zoos[0]}), {g['setting']}", f"{g['time_ratio']:.2f}",
                        "(none)", "-"))
    summary.append((f"add 1 model / all {n_zoo} (flatten + embed)", f"{ratio:.4f}",
                    f"<= {ADD_ONE_FACTOR}/{n_zoo} = {ADD_ONE_FACTOR / n_zoo:.4f}", _budget(ratio <= ADD_ONE_FACTOR / n_zoo)))
    for key, value in exponents.items():
        summary.append((f"cost exponent k (seconds ~ params^k), {key}", f"{value:.2f}", "(none)", "-"))
    _say(f"\nsummary ({STANDIN}; largest checkpoint {largest['architecture']}, {largest['n_values'] / 1e6:.1f} M)")
    _table(("figure", "measured", "budget", "met"), summary)
    return {
        "standin": STANDIN, "archs": archs, "zoo_archs": zoo_archs, "zoos": zoos, "epochs": args.epochs,
        "idle_flatten": idle_flatten, "idle_train": idle_train, "flatten": flatten_rows,
        "zoo": [asdict(m) for m in zoo], "new_model": asdict(new_model), "training": train_rows, "growth": growth,
        "embedding": embed_rows, "zoo_embed_seconds": zoo_embed, "new_model_embed_seconds": new_embed,
        "add_one_ratio": ratio, "exponents": exponents, "summary": summary, "plot": str(png),
    }


if __name__ == "__main__":
    main()
