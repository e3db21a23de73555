"""Do sampled training tasks help the ranker on held-out families? (issue 15, items 2, 3 and 5)

Per world (``--worlds``: work folders as ``make demo`` leaves them; each world's table hash printed):

1. every zoo model's penultimate features of each dataset's token images, once per (model, dataset), read
   from the world's artifact store (the features artifacts ``transferability_scores`` wrote, where they hold
   the same images) or computed once and published there (``--no-feature-cache``: in memory only);
2. the proxies (4-fold linear probe, LogME, their aggregate) on every real dataset, and their agreement
   with the fine-tune truth (Spearman and weighted tau per dataset, mean over datasets);
3. a pool of tasks drawn once over the world's datasets (class subsets and mixtures of 2-4 datasets),
   labelled by every proxy; a leave-family-out fold uses only the tasks drawn from its TRAINING datasets
   (the first N of them), labelled by the proxy that agrees best with the truth on its training and
   validation datasets;
4. each ranker variant trained on each fold's real training lists plus N tasks (N = 0, 100, 1000; mixtures
   on or off; the tasks' share of each epoch), early-stopped on the fold's validation datasets.

It prints the validation score of every setting (what would select among them), the test weighted tau,
and test differences paired by (world, fold) against N = 0 and against the best data-free prior (chosen
on validation among the history prior, model size and source accuracy).

    .venv/bin/python -m benchmarks.task_sampling --worlds .work .work/seed1 .work/seed2
    .venv/bin/python -m benchmarks.task_sampling --worlds .work/seed2 --pooled w0.parquet w1.parquet  # run by run
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from benchmarks.ranking_quality import commit, open_store, run_worlds, world_stores
from ml_core.evaluation import leave_family_out_folds, paired_differences, validation_score, variant_configs
from ml_core.evaluation.evaluation import select_priors
from ml_core.evaluation.sampled import TaskSetting, dataset_proxies, evaluate_task_fold, task_pool
from ml_core.ground_truth import ZooCell, zoo_cells, zoo_model_runner
from ml_core.progress import progress
from ml_core.ranking.proxies import FeatureStore, describe_agreement, zoo_token_features
from ml_core.ranking.tasks import TaskSamplerConfig, sample_tasks
from pipelines.readers import materialized
from resources.dataset_catalog import DatasetCatalog
from resources.model_zoo import ModelZoo


VARIANTS = ("linear+baselines", "seed_transformer")


def zoo_runners(zoo_root: str, models: list[str], file_sha256=None) -> tuple[dict, dict]:  # noqa: ANN001
    """``({model key: images -> (n, d) features}, {model key: ZooCell})`` for the zoo models among ``models``
    that have a card (``file_sha256``: the checkpoints' hashes, the features' cache key; none: not hashed)."""
    cells: list[ZooCell] = zoo_cells(ModelZoo(root=zoo_root).entries(), file_sha256 or (lambda _path: ""))
    runners, kept = {}, {}
    for cell in cells:
        if cell.key not in models or cell.card is None:
            continue
        runners[cell.key], kept[cell.key] = _deferred_runner(cell), cell
    return runners, kept


def _deferred_runner(cell: ZooCell):  # noqa: ANN202 - images -> features, the model loaded on the first call
    loaded = []

    def run(images):  # noqa: ANN001, ANN202
        if not loaded:
            loaded.append(zoo_model_runner(cell))
        return loaded[0](images)

    return run


def settings_of(args: argparse.Namespace) -> list[TaskSetting]:
    """No task; every number of tasks x mixtures on / off x share; the extra shares for the most tasks, mixed."""
    settings = [TaskSetting(0)]
    for n in args.tasks:
        for mixtures in (True, False) if args.mixtures == "both" else (args.mixtures == "on",):
            settings += [TaskSetting(n, mixtures, share) for share in args.shares]
    settings += [TaskSetting(max(args.tasks), True, share) for share in args.extra_shares if share not in args.shares]
    return settings


def run_world(options: argparse.Namespace, settings: list[TaskSetting]) -> tuple[pd.DataFrame, dict]:
    start = time.perf_counter()
    store, data = open_store(options)
    catalog = DatasetCatalog(root=options.datasets)
    dirs = {e.key: e.path for e in catalog.entries() if e.key in data.dataset_names}
    if options.feature_cache:  # read (or compute once and publish) each model's features in the world's store
        runners, cells = zoo_runners(options.zoo, data.model_names, store.fingerprints.file_sha256)
        cache = FeatureStore(store, cells, store.fingerprints.folder)
    else:
        (runners, _), cache = zoo_runners(options.zoo, data.model_names), None
    features = zoo_token_features(runners, dirs, data.dataset_tokens, cache)
    feature_seconds = time.perf_counter() - start
    proxies = dataset_proxies(data, features)
    agreement = describe_agreement(proxies, data.accuracy)
    for name, table in (("store probe (1000 train imgs)", data.probe), ("store logme", data.logme)):
        if table is not None:
            agreement[name] = describe_agreement({name: table}, data.accuracy)[name]
    pool_start = time.perf_counter()
    sampler = TaskSamplerConfig(n_tasks=options.pool, mixture_share=0.5, seed=options.seed)
    pool = task_pool(sample_tasks(data.dataset_names, data.dataset_tokens, sampler), data.dataset_tokens, features,
                     data.model_names)
    label_seconds = time.perf_counter() - pool_start
    variants = variant_configs(list(options.variants), seed=options.seed)
    folds = leave_family_out_folds(data.dataset_names, data.families, val_families=2, seed=options.seed)
    rows = []
    train_start = time.perf_counter()
    for fold in progress(folds, desc="folds"):
        rows += evaluate_task_fold(data, fold, pool, proxies, settings, variants)
    info = {
        "table": materialized(store, "ground_truth_ranks").content_hash[:12], "agreement": agreement,
        "models": len(data.model_names), "datasets": len(data.dataset_names), "folds": len(folds),
        "families": len(set(data.families.values())), "pool": len(pool.tasks),
        "mixtures": sum(t.kind == "mixture" for t in pool.tasks), "images": float(np.mean([t.n_images for t in pool.tasks])),
        "seconds": {"features": feature_seconds, "labels": label_seconds, "training": time.perf_counter() - train_start},
    }
    return pd.DataFrame(rows), info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", nargs="+", default=[], help="work folders (each with artifacts/, demo_world/)")
    parser.add_argument("--pooled", nargs="+", default=[],
                        help="rows written by earlier runs (--out), pooled with these worlds' (one world per run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--mixtures", choices=["on", "off", "both"], default="both")
    parser.add_argument("--shares", type=float, nargs="+", default=[0.5], help="the tasks' share of each epoch")
    parser.add_argument("--extra-shares", type=float, nargs="*", default=[0.8],
                        help="more shares, for the largest number of tasks with mixtures only")
    parser.add_argument("--pool", type=int, default=2800, help="tasks drawn per world (each fold uses its eligible ones)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--out", default=None, help="write the rows as parquet here")
    parser.add_argument("--no-feature-cache", dest="feature_cache", action="store_false",
                        help="compute every model's features in memory (default: read them from the world's artifact "
                             "store, or compute them once and publish them there)")
    args = parser.parse_args()
    args.store = args.datasets = args.zoo = None
    torch.set_num_threads(2)
    settings = settings_of(args)
    start = time.perf_counter()
    pooled = [pd.read_parquet(path) for path in args.pooled]
    rows, infos = run_worlds(world_stores(args) if args.worlds else [], lambda options: run_world(options, settings),
                             pooled, out=args.out)
    print(f"task sampling | commit {commit()} | seed {args.seed} | worlds {sorted(set(rows['world']))} | pool {args.pool} "
          f"tasks per world | {time.perf_counter() - start:.0f} s on this CPU")
    for label, info in infos:
        s = info["seconds"]
        print(f"\n== {label}: table {info['table']} | {info['models']} models, {info['datasets']} datasets in "
              f"{info['families']} families, {info['folds']} folds | pool {info['pool']} tasks ({info['mixtures']} mixtures, "
              f"{info['images']:.0f} images each on average) | seconds: zoo features {s['features']:.0f}, "
              f"proxy labels {s['labels']:.0f}, training {s['training']:.0f}")
        print("  proxy agreement with the fine-tune truth over every dataset (mean Spearman / weighted tau):")
        for name, value in info["agreement"].items():
            print(f"    {name:32s} {value['spearman']:+.3f} / {value['weighted_tau']:+.3f}")
    report(rows, [v for v in args.variants if rows["method"].str.startswith(f"ranker:{v}|").any()])


def report(rows: pd.DataFrame, variants: list[str]) -> None:
    """Validation and test of every setting, pooled over the worlds' folds, and the paired differences."""
    proxies = rows.drop_duplicates("fold")["proxy"].value_counts().to_dict()
    print(f"\nproxy chosen per fold (agreement on its training and validation datasets): {proxies}")
    used = rows[rows["method"].str.contains("|", regex=False)].assign(setting=lambda f: f["method"].str.split("|").str[1])
    print("tasks used per fold (mean, min): " + ", ".join(
        f"{s} {g['n_tasks_used'].mean():.0f}, {g['n_tasks_used'].min()}" for s, g in used.groupby("setting", sort=False)
        if s != "tasks=0"))
    best_priors = []
    for label, frame in rows.groupby("world", sort=False):  # chosen per world, on its validation folds
        best, which = select_priors(frame)
        best_priors.append(best)
        print(f"{label}: best data-free prior on validation: {which.get('family')}")
    rows = pd.concat([rows, *best_priors], ignore_index=True)
    methods = [m for m in dict.fromkeys(rows["method"]) if m.startswith("ranker:") or m in ("prior", "best_prior")]
    test = rows[rows["split"] == "test"]
    per_fold = test.groupby(["fold", "method"])["weighted_tau_truth"].mean().unstack()
    worlds = list(dict.fromkeys(rows["world"]))
    per_world = test.groupby(["world", "fold", "method"])["weighted_tau_truth"].mean().groupby(["world", "method"]).mean()
    regret = test.groupby(["fold", "method"])["top1_regret"].mean().unstack().mean()
    print("\nleave-family-out, weighted tau (truth-ordered), mean over (world, fold); validation chooses:")
    print(f"  {'method':58s} {'validation':>10s} {'test':>7s} {'regret':>6s}   per world (test)")
    for method in methods:
        cells = " / ".join(f"{per_world.get((w, method), np.nan):+.3f}" for w in worlds)
        print(f"  {method:58s} {validation_score(rows, method):+10.3f} {per_fold[method].mean():+7.3f} "
              f"{regret[method]:6.1f}   {cells}")
    for variant in variants:
        mine = [m for m in methods if m.startswith(f"ranker:{variant}|")]
        best = max(mine, key=lambda m: validation_score(rows, m))
        print(f"  validation selects for {variant}: {best} (test {per_fold[best].mean():+.3f})")
    for baseline in ("best_prior", *[f"ranker:{v}|tasks=0" for v in variants]):
        differences = paired_differences(test[test["method"].isin(methods)], baseline)
        if baseline != "best_prior":
            differences = differences[differences["method"].str.startswith(baseline.split("|")[0] + "|")]
        print(f"\nTEST, paired by (world, fold): method minus {baseline}; mean +- s.e. over folds, folds better:")
        for row in differences.itertuples():
            print(f"  {row.method:58s} {row.mean_difference:+.3f} +- {row.standard_error:.3f}   "
                  f"better in {row.folds_better}/{row.n_folds}")


if __name__ == "__main__":
    main()
