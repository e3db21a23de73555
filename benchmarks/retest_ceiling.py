"""How well can ANY ranker do on the demo world? Re-measure the table and rank by the re-measurement.

The ground truth is one seeded fine-tune per (model, dataset) cell, scored on ~520 test images: it
carries measurement noise (test sampling, fine-tuning seed). This script fine-tunes every cell a
second time with another seed (same protocol, same data, one torch thread per worker) and scores
the second table as if it were a ranker's prediction of the first: weighted tau (truth-ordered),
top-1 regret (points), per dataset and averaged over the leave-family-out folds the evaluation
uses (mean of per-family means, as ``ranker_evaluation`` reports). A ranker that knew every
model's true expected accuracy would do about as well as this retest or better (the retest has
the noise twice; a perfect predictor once); no data-driven ranker should be expected to do better.
The data-free prior is printed beside it, from the same folds.

    .venv/bin/python -m benchmarks.retest_ceiling                 # after `make demo`; ~6 min on 2 cores
    .venv/bin/python -m benchmarks.retest_ceiling --retest-seed 2 --workers 2

``--results FILE`` keeps the re-measured cells as JSON and reuses them on the next run.
"""

import argparse
import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ml_core.artifacts import read_json, write_json
from ml_core.ground_truth import (
    TransferProtocol,
    load_split,
    load_zoo_model,
    measure_transfer,
    torch_threads,
)
from ml_core.metrics import top1_regret, weighted_tau
from ml_core.ranking.baselines import data_free_prior
from ml_core.weights import ModelCard
from pipelines.readers import ground_truth
from resources.artifact_store import ArtifactStore
from resources.dataset_catalog import DatasetCatalog
from resources.settings import default_artifact_root, default_datasets_dir, default_zoo_dir


def measure_column(zoo_dir: str, dataset_dir: str, models: list[str], seed: int) -> tuple[dict[str, float], float]:
    """Fine-tune accuracy of every model on one dataset with ``seed``; returns ({model: acc}, seconds)."""
    protocol = TransferProtocol(seed=seed)
    train = load_split(Path(dataset_dir), protocol.train_split)
    test = load_split(Path(dataset_dir), protocol.test_split, train.classes)
    column, seconds = {}, 0.0
    with torch_threads(1):
        for model in models:
            card = ModelCard.read(Path(zoo_dir) / f"{model}.json")
            net = load_zoo_model(Path(zoo_dir) / f"{model}.safetensors", card)
            result = measure_transfer(net, card, train, test, protocol)
            column[model] = result.accuracy
            seconds += result.seconds
    return column, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=default_artifact_root())
    parser.add_argument("--datasets", default=default_datasets_dir())
    parser.add_argument("--zoo", default=default_zoo_dir())
    parser.add_argument("--retest-seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    store = ArtifactStore(root=args.store)
    catalog = DatasetCatalog(root=args.datasets)
    ranks = ground_truth(store)
    truth = ranks.pivot(index="dataset_key", columns="model_key", values="accuracy")
    datasets, models = list(truth.index), list(truth.columns)
    entries = {e.key: e for e in catalog.entries()}
    families = {d: entries[d].family for d in datasets}

    results = read_json(args.results) if args.results and args.results.is_file() else {}
    start = time.perf_counter()
    todo = [d for d in datasets if d not in results]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = {d: pool.submit(measure_column, str(args.zoo), str(entries[d].path), models, args.retest_seed)
                   for d in todo}
        for d, future in futures.items():
            results[d], _ = future.result()
    if args.results:
        write_json(args.results, results)
    seconds = time.perf_counter() - start

    acc = truth.to_numpy(dtype=np.float64)
    retest = np.array([[results[d][m] for m in models] for d in datasets])
    print(f"retest ceiling | {len(models)} models x {len(datasets)} datasets | ground truth seed from the store, "
          f"retest seed {args.retest_seed} | {len(todo)} columns measured in {seconds:.0f} s")
    print(f"{'dataset':22s} {'family':16s} {'spread':>6s} {'retest wtau':>11s} {'regret':>6s}  "
          f"{'prior wtau':>10s} {'regret':>6s}  mean |retest - truth| (pts)")
    per = {}
    for i, d in enumerate(datasets):
        train = [j for j, e in enumerate(datasets) if families[e] != families[d]]
        prior = data_free_prior(acc[train])
        row = (weighted_tau(acc[i], retest[i]), 100 * top1_regret(acc[i], retest[i]),
               weighted_tau(acc[i], prior), 100 * top1_regret(acc[i], prior))
        per[d] = row
        print(f"{d:22s} {families[d]:16s} {100 * np.ptp(acc[i]):6.1f} {row[0]:+11.3f} {row[1]:6.1f}  "
              f"{row[2]:+10.3f} {row[3]:6.1f}  {100 * np.mean(np.abs(retest[i] - acc[i])):.1f}")
    by_family: dict[str, list[tuple]] = {}
    for d, row in per.items():
        by_family.setdefault(families[d], []).append(row)
    folds = np.array([np.mean(rows, axis=0) for rows in by_family.values()])
    mean, std = folds.mean(0), folds.std(0)
    print(f"\nover {len(folds)} leave-family-out folds (mean of per-family means +- std over folds):")
    print(f"  retest (re-measured table as the ranking): weighted tau {mean[0]:+.3f} +- {std[0]:.3f}, "
          f"regret {mean[1]:.1f} +- {std[1]:.1f} points")
    print(f"  data-free prior (same folds):              weighted tau {mean[2]:+.3f} +- {std[2]:.3f}, "
          f"regret {mean[3]:.1f} +- {std[3]:.1f} points")
    print(json.dumps({"retest_wtau": mean[0], "retest_regret": mean[1], "prior_wtau": mean[2],
                      "prior_regret": mean[3]}))


if __name__ == "__main__":
    main()
