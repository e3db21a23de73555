"""Which dataset descriptor carries a zoo ranking across families? (issue 15, item 4)

Per world (``--worlds``: work folders as ``make demo`` leaves them; each world's seed, table hash and the
commit printed): every labelled dataset described by each descriptor of
:mod:`ml_core.ranking.descriptors` (pure functions of its tokens), then leave-family-out folds
(:func:`~ml_core.evaluation.leave_family_out_folds`, validation families seeded by ``--seed``) and, per fold
and descriptor, the nearest-dataset ranking with ``k`` / temperature (/ the learned metric's ridge) chosen
on the fold's VALIDATION datasets (:mod:`ml_core.evaluation.descriptor_study`). It prints the validation
and test weighted tau (truth-ordered, as every ranking benchmark here), top-1 regret, differences paired by
(world, fold) against the best data-free prior (chosen on validation), against today's ``mean`` descriptor
(validated the same way) and the oracle-neighbour ceiling, and how often each descriptor's single nearest
training dataset is one whose zoo ranking agrees with the held-out one's.

    .venv/bin/python -m benchmarks.descriptors                          # .work: the demo world
    .venv/bin/python -m benchmarks.descriptors --worlds .work .work/seed1 --out .work/descriptors.parquet
    .venv/bin/python -m benchmarks.descriptors --tasks 600     # + metrics learned on 600 sampled tasks
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.ranking_quality import add_store_arguments, commit, open_store, run_worlds, world_stores
from ml_core.evaluation import leave_family_out_folds, paired_differences
from ml_core.evaluation.descriptor_study import (
    LEARNED_TASKS,
    NeighbourGrid,
    TaskExamples,
    base_descriptor,
    evaluate_descriptors,
    known_methods,
)
from ml_core.evaluation.sampled import dataset_proxies, task_pool
from ml_core.progress import progress
from ml_core.ranking.descriptors import describe, describe_all
from ml_core.ranking.proxies import zoo_token_features
from ml_core.ranking.tasks import TaskSamplerConfig, sample_tasks
from pipelines.readers import materialized, world_seed
from resources.dataset_catalog import DatasetCatalog


def task_examples(options: argparse.Namespace, data, names: list[str]) -> tuple[TaskExamples, dict]:  # noqa: ANN001
    """A pool of ``options.tasks`` tasks drawn once over the world's datasets (each fold keeps those of its
    training datasets), labelled by every proxy on the zoo's features of their images, and described."""
    from benchmarks.task_sampling import zoo_runners  # its forward passes only when tasks are asked for

    start = time.perf_counter()
    dirs = {e.key: e.path for e in DatasetCatalog(root=options.datasets).entries() if e.key in data.dataset_names}
    features = zoo_token_features(zoo_runners(options.zoo, data.model_names), dirs, data.dataset_tokens)
    proxies = dataset_proxies(data, features)
    sampler = TaskSamplerConfig(n_tasks=options.tasks, mixture_share=0.5, seed=options.seed)
    pool = task_pool(sample_tasks(data.dataset_names, data.dataset_tokens, sampler), data.dataset_tokens, features,
                     data.model_names)
    label_seconds = time.perf_counter() - start
    vectors = {name: np.stack([describe(name, pool.tokens[t.name]) for t in progress(pool.tasks, desc=f"tasks: {name}")])
               for name in names}
    examples = TaskExamples([t.sources for t in pool.tasks], vectors, pool.labels, proxies,
                            max_tasks=options.tasks)
    return examples, {"tasks": len(pool.tasks), "mixtures": sum(t.kind == "mixture" for t in pool.tasks),
                      "label_seconds": label_seconds, "describe_seconds": time.perf_counter() - start - label_seconds}


def run_world(options: argparse.Namespace, methods: list[str], grid: NeighbourGrid) -> tuple[pd.DataFrame, dict]:
    start = time.perf_counter()
    store, data = open_store(options)
    names = sorted({base_descriptor(m) for m in methods})
    describe_start = time.perf_counter()
    vectors = describe_all(names, data.dataset_tokens)
    describe_seconds = time.perf_counter() - describe_start
    folds = leave_family_out_folds(data.dataset_names, data.families, val_families=options.val_families,
                                   seed=options.seed)
    tasks, task_info = None, {}
    task_names = sorted({base_descriptor(m) for m in methods if m.startswith(LEARNED_TASKS)})
    if task_names:
        tasks, task_info = task_examples(options, data, task_names)
    rows, choices, priors = evaluate_descriptors(data, folds, vectors, methods, grid, tasks)
    info = {"task_info": task_info, "world_seed": world_seed(Path(options.datasets).parent),
            "table": materialized(store, "ground_truth_ranks").content_hash[:12], "n_models": len(data.model_names),
            "n_datasets": len(data.dataset_names), "n_families": len(set(data.families.values())),
            "n_folds": len(folds), "choices": choices, "priors": priors, "describe_seconds": describe_seconds,
            "seconds": time.perf_counter() - start,
            "dims": {n: len(next(iter(v.values()))) for n, v in vectors.items()}}
    return rows, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_store_arguments(parser)
    parser.add_argument("--worlds", nargs="+", default=None,
                        help="work folders of several worlds (each with artifacts/ and demo_world/)")
    parser.add_argument("--val-families", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=None, help="default: every descriptor and learned metric")
    parser.add_argument("--tasks", type=int, default=0,
                        help="a pool of this many sampled tasks for the learned_tasks: metrics (0: none)")
    args = parser.parse_args()
    methods = args.methods or known_methods(with_tasks=args.tasks > 0)
    grid = NeighbourGrid()

    rows, worlds = run_worlds(world_stores(args), lambda options: run_world(options, methods, grid), out=args.out)

    print(f"dataset descriptors | commit {commit()} | fold seed {args.seed} | {len(worlds)} world(s); "
          f"weighted tau = scipy.stats.weightedtau(accuracy, score, rank=None) (truth-ordered); regret in points")
    for label, info in worlds:
        print(f"\n== {label}: world seed {info['world_seed']} | table {info['table']} | {info['n_models']} models, "
              f"{info['n_datasets']} labelled datasets in {info['n_families']} families; {info['n_folds']} "
              "leave-family-out folds | described in "
              f"{info['describe_seconds']:.1f} s, world in {info['seconds']:.0f} s | dims {info['dims']}")
        print(f"   best data-free prior chosen on validation: {info['priors']}")
        if info["task_info"]:
            t = info["task_info"]
            print(f"   sampled tasks: {t['tasks']} ({t['mixtures']} mixtures), zoo features + proxy labels "
                  f"{t['label_seconds']:.0f} s, described in {t['describe_seconds']:.0f} s; per fold: "
                  + ", ".join(sorted({f"{c[m]['proxy']}" for c in info['choices'].values() for m in c
                                     if 'proxy' in c[m]})) + " proxy, "
                  + f"{np.mean([c[m]['tasks'] for c in info['choices'].values() for m in c if 'tasks' in c[m]]):.0f}"
                  " tasks on average")
        print("   chosen per fold (k / temperature / ridge; k=0: every training dataset), most frequent:")
        for method in methods:
            picks = pd.Series([f"{c[method]['k']}/{c[method]['temperature']:g}/{c[method]['ridge']:g}"
                               for c in info["choices"].values()]).value_counts()
            print(f"     {method:32s} " + ", ".join(f"{k} x{v}" for k, v in picks.head(3).items()))
    report(rows, methods)


def report(rows: pd.DataFrame, methods: list[str]) -> None:
    nearest = [f"nearest:{m}" for m in methods]
    order = ["best_prior", "prior", "prior_size", "prior_source_accuracy", "nearest_fixed:mean", *nearest,
             "oracle_nearest"]
    per_fold = rows.groupby(["split", "fold", "method"])[["weighted_tau_truth", "top1_regret"]].mean()
    print("\nweighted tau (mean over folds of the per-fold mean) and top-1 regret; "
          "oracle_nearest reads the test truth (a ceiling, not a method):")
    print("| method | val wtau | test wtau | test regret (pts) | nn agreement | nn percentile | nn in top-3 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    test = rows[rows["split"] == "test"]
    for method in order:
        if method not in set(test["method"]):
            continue
        val = per_fold.loc["val"].xs(method, level="method")["weighted_tau_truth"].mean()
        tst = per_fold.loc["test"].xs(method, level="method")
        mine = test[test["method"] == method]
        diag = (" | ".join(f"{mine[c].mean():.3f}" for c in ("nn_agreement", "nn_percentile", "nn_top3"))
                if "nn_agreement" in mine and mine["nn_agreement"].notna().any() else " | ")
        print(f"| {method} | {val:+.3f} | {tst['weighted_tau_truth'].mean():+.3f} | {tst['top1_regret'].mean():.1f} | "
              f"{diag} |")
    for baseline in ("best_prior", "nearest:mean"):
        for split in ("val", "test"):
            part = rows[rows["split"] == split]
            diffs = paired_differences(part, baseline)
            diffs = diffs[diffs["method"].isin([*nearest, "nearest_fixed:mean", "oracle_nearest", "best_prior"])]
            print(f"\n{split.upper()}, paired by (world, fold): method minus {baseline}, weighted tau; "
                  "mean +- s.e. over folds, folds better:")
            for row in diffs.itertuples():
                print(f"  {row.method:46s} {row.mean_difference:+.3f} +- {row.standard_error:.3f}"
                      f"   better in {row.folds_better}/{row.n_folds}")
    regret = paired_differences(test, "best_prior", metric="top1_regret")
    regret = regret[regret["method"].isin(nearest)]
    print("\nTEST top-1 regret, method minus best_prior (points; negative is better):")
    for row in regret.itertuples():
        print(f"  {row.method:46s} {row.mean_difference:+.2f} +- {row.standard_error:.2f}")
    chance = test[test["method"].isin(nearest)].groupby("method")["nn_percentile"].apply(
        lambda s: np.mean(s > 0.5)).reindex(nearest)
    print("\nTEST share of held-out datasets whose nearest training dataset agrees better than half the training "
          "datasets (nn percentile > 0.5; a random pick: about 0.5):")
    for method, value in chance.items():
        print(f"  {method:46s} {value:.2f}")


if __name__ == "__main__":
    main()
