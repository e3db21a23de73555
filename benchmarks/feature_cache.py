"""Scoring the zoo on every dataset again with another scoring config, when the features are cached (same run).

Over every (model, dataset) cell of a generated world, the scores of ``transferability_scores`` (LogME,
H-score, linear probe; :func:`ml_core.ground_truth.scored_outcome`) computed three ways:

1. in memory, as before the features were cached: decode, forward pass, score (nothing stored);
2. cold, on an empty artifact store: decode, forward pass, write and publish the features artifact, score;
3. another scoring config (``probe_folds`` 4 -> 5, ``probe_seed`` 0 -> 1) on the same store: every
   features artifact is a hit, so no image is decoded and no model runs: read the features, score.

After an untimed warm-up, ``--repeats`` rounds (each on a fresh store; 1 and 2 in alternating order) give
the median of each time, the ratios 3 / 2 and 2 / 1, and the forward passes each spent. The cell cache on top
(``transferability_cell``: the scores' JSON, a Dagster-free look-up) is not part of these times.

    .venv/bin/python -m benchmarks.feature_cache                   # the STAND-IN world (generated, seconds)
    .venv/bin/python -m benchmarks.feature_cache --scale reduced   # the tests' REDUCED demo world
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import ml_core.ground_truth.columns as columns_module
import ml_core.ground_truth.features as features_module
from ml_core.ground_truth import (
    TransferabilityConfig,
    cached_model_features,
    load_split,
    scored_outcome,
    scoring_images,
    transferability_outcome,
    zoo_cells,
)
from resources.artifact_store import ArtifactStore
from resources.dataset_catalog import DatasetCatalog
from resources.model_zoo import ModelZoo
from worlds import build_world


def _images(path, config: TransferabilityConfig):  # noqa: ANN001, ANN202 - decoded once per dataset, on first use
    kept = []

    def images():  # noqa: ANN202
        if not kept:
            kept.append(scoring_images(load_split(path, config.split), config.max_images))
        return kept[0]

    return images


def score_all(world, store: ArtifactStore | None, config: TransferabilityConfig) -> tuple[float, dict]:  # noqa: ANN001
    """Seconds to score every cell (``store`` None: in memory) and the outcomes by (dataset, model)."""
    cells = [c for c in zoo_cells(ModelZoo(root=str(world.zoo_dir)).entries(),
                                  store.fingerprints.file_sha256 if store else (lambda _p: "")) if c.card is not None]
    start = time.perf_counter()
    out = {}
    for entry in DatasetCatalog(root=str(world.datasets_dir)).entries():
        images = _images(entry.path, config)
        fingerprint = store.fingerprints.folder(entry.path) if store else None
        for cell in cells:
            if store is None:
                out[entry.key, cell.key] = transferability_outcome(cell, images, config)
            else:
                out[entry.key, cell.key] = scored_outcome(
                    lambda cell=cell, entry=entry, images=images, fingerprint=fingerprint: cached_model_features(
                        store, cell, dataset=entry.key, dataset_fingerprint=fingerprint,
                        selection=config.selection(), images=images)[0], config)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["standin", "reduced"], default="standin")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="rounds, each on a fresh store (medians printed)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    passes: list[str] = []
    real = features_module.zoo_model_runner

    def counted(cell):  # noqa: ANN001, ANN202 - one per forward pass of a model over a dataset
        passes.append(cell.key)
        return real(cell)

    features_module.zoo_model_runner = columns_module.zoo_model_runner = counted
    first, changed = TransferabilityConfig(), TransferabilityConfig(probe_folds=5, probe_seed=1)
    times: dict[str, list[float]] = {"memory": [], "cold": [], "again": []}
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        world = build_world(Path(tmp) / "world", scale=args.scale, seed=args.seed)
        built = time.perf_counter() - start
        score_all(world, None, first)  # warm-up (imports, first model loads, the images in the OS cache): not timed
        for round_ in range(args.repeats):
            store = ArtifactStore(root=str(Path(tmp) / f"artifacts{round_}"))
            order = ("memory", "cold") if round_ % 2 == 0 else ("cold", "memory")  # neither always runs first
            for way in order:
                before = len(passes)
                seconds, outcomes = score_all(world, None if way == "memory" else store, first)
                times[way].append(seconds)
                counts[way] = len(passes) - before
                if way == "memory":
                    memory = outcomes
                else:
                    cold = outcomes
            before = len(passes)
            seconds, again = score_all(world, store, changed)
            times["again"].append(seconds)
            counts["again"] = len(passes) - before
        size = sum(p.stat().st_size for p in (Path(tmp) / "artifacts0" / "model_features").rglob("*") if p.is_file())
    features_module.zoo_model_runner = columns_module.zoo_model_runner = real
    same = all({k: v for k, v in memory[key].items() if k != "forward_seconds"}
               == {k: v for k, v in cold[key].items() if k != "forward_seconds"} for key in memory)
    moved = sum(again[key].get("probe") != cold[key].get("probe") for key in cold)
    errors = sum("error" in o for o in cold.values())
    med = {way: float(np.median(values)) for way, values in times.items()}
    print(f"world: the {args.scale.upper()} scale (generated stand-in data, seed {args.seed}; built in {built:.0f} s): "
          f"{len(world.model_names)} models x {len(world.dataset_names)} datasets = {len(cold)} cells "
          f"({errors} unscorable); this CPU, 1 torch thread; median of {args.repeats} rounds (each round's seconds)")
    rounds = {way: " ".join(f"{v:.2f}" for v in values) for way, values in times.items()}
    print(f"1. in memory (no features stored)       {med['memory']:7.2f} s   {counts['memory']} forward passes   "
          f"[{rounds['memory']}]")
    print(f"2. cold: features computed + published  {med['cold']:7.2f} s   {counts['cold']} forward passes   "
          f"= {med['cold'] / med['memory']:.2f} x in memory; {size / 1e6:.1f} MB of features   [{rounds['cold']}]")
    print(f"3. probe folds 4 -> 5, features cached  {med['again']:7.2f} s   {counts['again']} forward passes   "
          f"= {med['again'] / med['cold']:.3f} x cold   [{rounds['again']}]")
    print(f"scores of 2 equal to 1 (bitwise, every cell): {same}; probe scores that the new config moved: "
          f"{moved} of {len(cold)}")


if __name__ == "__main__":
    main()
