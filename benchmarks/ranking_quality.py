"""Ranking quality on held-out data: the learned ranker beside random, the data-free priors,
nearest-dataset, source similarity, LogME, H-score, the linear probe and a budget of forward passes,
for leave-family-out and leave-models-out folds, in one run, over one or several generated worlds.

It reads materialized artifact stores (run `make demo` first: the demo world's embeddings, tokens,
ground truth and transferability scores), sweeps the ranker variants, selects the one with the best
VALIDATION weighted tau (test folds never take part), and prints the test table with the seed and
the commit. With several worlds (``--worlds``: work folders, each with ``artifacts/`` and
``demo_world/`` as ``make demo`` leaves them, e.g. one per ``pipelines.cli demo --seed``), every
choice is made per world on its own validation folds, each world's table hash is printed, and the
figures are pooled: means over every world's folds, differences paired by (world, fold). A work
folder may hold a world of another scale (``demo_world_wide/``, 26 families). ``--materialized``
reads each world's ``ranker_evaluation`` (which ``demo`` materialized with ``--variants default``,
seed 0, 3 model folds) instead of evaluating again: the same rows, without the hour.

    .venv/bin/python -m benchmarks.ranking_quality                  # .work: the demo world
    .venv/bin/python -m benchmarks.ranking_quality --variants default --worlds .work .work/seed1 .work/seed2
    .venv/bin/python -m benchmarks.ranking_quality --variants default --materialized --worlds .work/wide0 .work/wide1
"""

import argparse
import json
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml_core.evaluation import (
    EvaluationConfig,
    EvaluationData,
    EvaluationResult,
    evaluate,
    evaluation_folds,
    paired_differences,
    retrained_tokens,
    summarize,
    summary_markdown,
    validation_score,
)
from pipelines.readers import (
    autoencoder_training,
    materialized,
    materialized_evaluation,
    model_parameters,
    store_evaluation_data,
    world_seed,
)
from resources.artifact_store import ArtifactStore
from resources.dataset_catalog import DatasetCatalog
from resources.model_zoo import ModelZoo
from resources.settings import default_artifact_root, default_datasets_dir, default_zoo_dir

#: the rows every world's line shows (besides the budget curve)
HEADLINE = ("prior", "best_prior", "nearest_source_profile", "ranker", "logme", "probe", "two_stage")
#: the baselines the methods are paired against
BASELINES = ("best_prior", "prior", "nearest", "source_similarity", "logme", "probe", "best_all_pass")
#: the methods paired against each baseline (besides the budget rows)
PAIRED = (*HEADLINE, "prior_size", "prior_source_accuracy", "nearest", "source_similarity", "weight_neighbours",
          "source+weights", "h_score", "probe+prior", "probe+logme+prior", "best_all_pass", "oracle_nearest")


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every evaluation benchmark shares: where the store and datasets are, seed, output."""
    parser.add_argument("--store", default=default_artifact_root())
    parser.add_argument("--datasets", default=default_datasets_dir())
    parser.add_argument("--zoo", default=default_zoo_dir(), help="the zoo folder (its cards feed the priors)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the rows as parquet here")


def open_store(args: argparse.Namespace) -> tuple[ArtifactStore, EvaluationData]:
    """The store named by :func:`add_store_arguments`'s options and the evaluation data it holds."""
    store = ArtifactStore(root=args.store)
    return store, store_evaluation_data(store, DatasetCatalog(root=args.datasets), ModelZoo(root=args.zoo))


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def world_stores(args: argparse.Namespace) -> list[tuple[str, argparse.Namespace]]:
    """``(label, options)`` per world: the ``--store/--datasets/--zoo`` options, or one per ``--worlds`` folder."""
    if not args.worlds:
        return [("world", args)]
    worlds = []
    for folder in map(Path, args.worlds):
        world, scale = world_in(folder)
        options = argparse.Namespace(**vars(args))
        options.store, options.datasets, options.zoo = (str(folder / "artifacts"), str(world / "datasets"),
                                                        str(world / "zoo"))
        seed = world_seed(world)
        label = f"seed{seed}" if seed is not None else folder.name
        worlds.append((label if scale == "full" else f"{scale}:{label}", options))
    return worlds


def world_in(folder: Path) -> tuple[Path, str]:
    """The built-in world of a work folder and its scale: ``demo_world`` (full), else the one
    ``demo_world_<scale>`` there (``modelrec demo --scale wide`` with ``MODELREC_WORK_DIR=folder``)."""
    if (folder / "demo_world").is_dir():
        return folder / "demo_world", "full"
    others = sorted(p for p in folder.glob("demo_world_*") if p.is_dir())
    if len(others) != 1:
        raise SystemExit(f"{folder}: expected demo_world/ or one demo_world_<scale>/ in it, found "
                         f"{[p.name for p in others] or 'none'}")
    return others[0], others[0].name.removeprefix("demo_world_")


def run_worlds(worlds: Sequence[tuple[str, argparse.Namespace]],
               run: Callable[[argparse.Namespace], tuple[pd.DataFrame, Any]],
               pooled: Sequence[pd.DataFrame] = (), out: str | None = None) -> tuple[pd.DataFrame, list[tuple[str, Any]]]:
    """``run(options) -> (rows, info)`` for each of ``worlds`` (:func:`world_stores`): every world's rows,
    tagged with the world and with their folds named ``<world>:<fold>`` (so folds pair within a world), after
    the ``pooled`` rows of earlier runs, written to ``out`` when given; and each world's info."""
    frames, infos = list(pooled), []
    for label, options in worlds:
        rows, info = run(options)
        frames.append(rows.assign(world=label, fold=label + ":" + rows["fold"]))
        infos.append((label, info))
    rows = pd.concat(frames, ignore_index=True)
    if out:
        rows.to_parquet(Path(out), index=False)
    return rows, infos


def run_world(options: argparse.Namespace) -> tuple[EvaluationData, EvaluationResult, str, int]:
    """One world's evaluation: its data, the result, its table hash and its number of folds."""
    store, data = open_store(options)
    config = EvaluationConfig(variants=(options.variants,), seed=options.seed, models_folds=options.models_folds)
    if options.materialized:  # what `make demo` / `modelrec demo` already evaluated, read back
        result, saved = materialized_evaluation(store)
        differences = config_differences(json.loads(json.dumps(asdict(config))), saved)
        if differences:
            raise SystemExit(f"{options.store}: its ranker_evaluation ran with another config ({'; '.join(differences[:3])}): "
                             "drop --materialized to evaluate again")
        return data, result, materialized(store, "ground_truth_ranks").content_hash[:12], len(result.folds)
    tokens_without = retrained_tokens(model_parameters(store), autoencoder_training(store), data.model_names)
    folds = evaluation_folds(data, config)
    result = evaluate(data, folds, config, tokens_without)
    return data, result, materialized(store, "ground_truth_ranks").content_hash[:12], len(folds)


def config_differences(expected: dict, saved: dict, prefix: str = "") -> list[str]:
    """``key: saved != expected`` for every key both configs hold (nested), e.g. ``models_folds: 2 != 3``."""
    out = []
    for key in sorted(expected.keys() & saved.keys()):
        want, got = expected[key], saved[key]
        if isinstance(want, dict) and isinstance(got, dict):
            out += config_differences(want, got, f"{prefix}{key}.")
        elif want != got:
            out.append(f"{prefix}{key}: {got} != {want}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_store_arguments(parser)
    parser.add_argument("--variants", choices=["default", "sweep"], default="sweep")
    parser.add_argument("--models-folds", type=int, default=3)
    parser.add_argument("--worlds", nargs="+", default=None,
                        help="work folders of several worlds (each with artifacts/ and demo_world/ or demo_world_<scale>/)")
    parser.add_argument("--materialized", action="store_true",
                        help="read each world's materialized ranker_evaluation (same variants, seed and folds) "
                             "instead of evaluating again")
    args = parser.parse_args()

    start = time.perf_counter()
    frames, worlds = [], []
    for label, options in world_stores(args):
        data, result, table_hash, n_folds = run_world(options)
        frames.append(result.rows.assign(world=label, fold=label + ":" + result.rows["fold"]))
        worlds.append((label, data, result, table_hash, n_folds))
    rows = pd.concat(frames, ignore_index=True)
    seconds = time.perf_counter() - start
    if args.out:
        rows.to_parquet(Path(args.out), index=False)

    print(f"ranking quality | commit {commit()} | evaluation seed {args.seed} | {len(worlds)} world(s) | "
          f"{seconds:.0f} s on this CPU")
    print("weighted tau 'truth' = scipy.stats.weightedtau(accuracy, score, rank=None) (Model Spider's); "
          "'scipy' = weightedtau(score, accuracy) (LogME / SFDA papers); regret in accuracy points")
    for label, data, result, table_hash, n_folds in worlds:
        print(f"\n== {label}: table {table_hash} | {len(data.model_names)} models, {len(data.dataset_names)} labelled "
              f"datasets in {len(set(data.families.values()))} families; {n_folds} folds")
        print_choices(result)
    test_rows = rows[rows["split"] == "test"]
    print(f"\nTEST over {len(worlds)} world(s), per world (mean over its folds; weighted tau, truth-ordered):")
    print_per_world(test_rows, [w[0] for w in worlds])
    print("\nTEST, pooled over the worlds' folds (held-out datasets; leave-models-out ranks only the held-out models):")
    summary = summarize(test_rows)
    print(summary_markdown(summary[~summary["method"].str.startswith("budget:")]))  # the rules: in the curve below
    print_budget_curve(test_rows)
    print("oracle_nearest reads the TEST truth to pick neighbours: the ceiling of neighbour-based rankings, not a method")
    for baseline in BASELINES:
        print(f"\nTEST, paired by (world, fold): method minus {baseline}, weighted tau (truth-ordered); "
              "mean +- standard error over folds, folds where the method is better:")
        differences = paired_differences(test_rows, baseline)
        print_paired(differences[differences["method"].isin(PAIRED) | differences["method"].str.startswith("budget@")])


def print_choices(result: EvaluationResult) -> None:
    """What validation chose in one world: the variant, the shortlist, the priors, the budget setting."""
    print("validation weighted tau per variant (mean of leave-family-out and leave-models-out; chooses 'ranker'):")
    for name, value in sorted(result.variant_validation.items(), key=lambda kv: -kv[1]):
        per_protocol = "  ".join(f"{p} {validation_score(result.rows, f'ranker:{name}', p):+.3f}"
                                 for p in ("family", "models"))
        mark = "   <- selected" if name == result.selected_variant else ""
        print(f"  {name:40s} {value:+.3f}  ({per_protocol}){mark}")
    print(f"shortlist ('two_stage'): {result.selected_shortlist}; best data-free prior per protocol: "
          f"{result.selected_priors}; best all-pass method: {result.selected_all_pass or '-'}; "
          f"budget setting ('budget@k'): {result.selected_budget}")
    best = sorted(result.budget_validation.items(), key=lambda kv: -kv[1])[:4]
    print("  best budget settings on validation: " + ", ".join(f"{k} {v:+.3f}" for k, v in best))


def print_per_world(test_rows: pd.DataFrame, labels: list[str]) -> None:
    methods = [m for m in HEADLINE if m in set(test_rows["method"])]
    methods += sorted((m for m in set(test_rows["method"]) if m.startswith("budget@")), key=lambda m: int(m[7:]))
    for protocol, part in test_rows.groupby("protocol", sort=False):
        per = part.groupby(["world", "fold", "method"])["weighted_tau_truth"].mean().groupby(["world", "method"]).mean()
        print(f"  {protocol}:")
        for method in methods:
            values = [per.get((label, method), np.nan) for label in labels]
            if np.all(np.isnan(values)):
                continue
            cells = "  ".join(f"{label} {v:+.3f}" for label, v in zip(labels, values, strict=True))
            print(f"    {method:24s} {cells}   mean {np.nanmean(values):+.3f} +- {np.nanstd(values):.3f} over worlds")


def print_budget_curve(test_rows: pd.DataFrame) -> None:
    """Quality against forward passes spent: each budget rule, and the all-pass methods beside it."""
    family = test_rows[test_rows["protocol"] == "family"]
    per_fold = family.groupby(["fold", "method"])[["weighted_tau_truth", "top1_regret"]].mean()
    per_method = per_fold.groupby("method").mean()
    curves = sorted({m.rsplit("@", 1)[0] for m in per_method.index if m.startswith("budget")})
    if not curves:
        return
    ks = sorted({int(m.rsplit("@", 1)[1]) for m in per_method.index if m.startswith("budget@")})
    print("\nTEST, leave-family-out: a budget of k forward passes (weighted tau / top-1 regret; the chosen rule is "
          "'budget'; k = 0 is the prior):")
    print("| rule | " + " | ".join(f"k={k}" for k in ks) + " |")
    print("| --- | " + " | ".join("---" for _ in ks) + " |")
    for curve in curves:
        cells = []
        for k in ks:
            name = f"{curve}@{k}" if k or curve == "budget" else "budget@0"
            cells.append(f"{per_method.loc[name, 'weighted_tau_truth']:+.3f} / {per_method.loc[name, 'top1_regret']:.1f}"
                         if name in per_method.index else "")
        print(f"| {curve} | " + " | ".join(cells) + " |")
    n = int(family["n_models"].iloc[0]) if "n_models" in family else 0
    for method in ("probe", "logme", "probe+prior", "probe+logme+prior", "best_all_pass", "two_stage"):
        if method in per_method.index:
            print(f"  all-pass {method}: {per_method.loc[method, 'weighted_tau_truth']:+.3f} / "
                  f"{per_method.loc[method, 'top1_regret']:.1f}" + (f" ({n} passes)" if method != "two_stage" else ""))


def print_paired(differences) -> None:  # noqa: ANN001 - a paired_differences frame
    for row in differences.itertuples():
        print(f"  {row.protocol:7s} {row.method:48s} {row.mean_difference:+.3f} +- {row.standard_error:.3f}"
              f"   better in {row.folds_better}/{row.n_folds}")


if __name__ == "__main__":
    main()
