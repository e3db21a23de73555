"""Ranking quality on held-out data: the learned ranker beside random, the prior, nearest-dataset,
LogME and H-score, for leave-family-out and leave-models-out folds, in one run.

It reads a materialized artifact store (run `make demo` first: the demo world's embeddings,
tokens, ground truth and transferability scores), sweeps the ranker variants, selects the one
with the best VALIDATION weighted tau (test folds never take part), and prints the test
table with the seed and the commit. Figures are means over folds +- their std over folds.

    .venv/bin/python -m benchmarks.ranking_quality                  # .work/artifacts, demo world
    .venv/bin/python -m benchmarks.ranking_quality --variants default
"""

import argparse
import subprocess
import time
from pathlib import Path

from ml_core.evaluation import (
    EvaluationConfig,
    EvaluationData,
    evaluate,
    evaluation_folds,
    paired_differences,
    retrained_tokens,
    summary_markdown,
    validation_score,
)
from pipelines.readers import autoencoder_training, model_parameters, store_evaluation_data
from resources.artifact_store import ArtifactStore
from resources.dataset_catalog import DatasetCatalog
from resources.settings import default_artifact_root, default_datasets_dir


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every evaluation benchmark shares: where the store and datasets are, seed, output."""
    parser.add_argument("--store", default=default_artifact_root())
    parser.add_argument("--datasets", default=default_datasets_dir())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the rows as parquet here")


def open_store(args: argparse.Namespace) -> tuple[ArtifactStore, EvaluationData]:
    """The store named by :func:`add_store_arguments`'s options and the evaluation data it holds."""
    store = ArtifactStore(root=args.store)
    return store, store_evaluation_data(store, DatasetCatalog(root=args.datasets))


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_store_arguments(parser)
    parser.add_argument("--variants", choices=["default", "sweep"], default="sweep")
    parser.add_argument("--models-folds", type=int, default=3)
    args = parser.parse_args()

    start = time.perf_counter()
    store, data = open_store(args)
    tokens_without = retrained_tokens(model_parameters(store), autoencoder_training(store), data.model_names)
    config = EvaluationConfig(variants=(args.variants,), seed=args.seed, models_folds=args.models_folds)
    folds = evaluation_folds(data, config)
    result = evaluate(data, folds, config, tokens_without)
    seconds = time.perf_counter() - start
    if args.out:
        result.rows.to_parquet(Path(args.out), index=False)

    print(f"ranking quality | commit {commit()} | seed {args.seed} | store {args.store}")
    print(f"{len(data.model_names)} models, {len(data.dataset_names)} labelled datasets in "
          f"{len(set(data.families.values()))} families; {len(folds)} folds; {seconds:.0f} s on this CPU")
    print("weighted tau 'truth' = scipy.stats.weightedtau(accuracy, score, rank=None) (Model Spider's); "
          "'scipy' = weightedtau(score, accuracy) (LogME / SFDA papers); regret in accuracy points")
    print("validation weighted tau per variant (mean of leave-family-out and leave-models-out; chooses the "
          "reported 'ranker'):")
    for name, value in sorted(result.variant_validation.items(), key=lambda kv: -kv[1]):
        per_protocol = "  ".join(f"{p} {validation_score(result.rows, f'ranker:{name}', p):+.3f}"
                                 for p in ("family", "models"))
        mark = "   <- selected" if name == result.selected_variant else ""
        print(f"  {name:40s} {value:+.3f}  ({per_protocol}){mark}")
    print("validation weighted tau per shortlist policy of the selected variant (chooses the reported 'two_stage'):")
    for name, value in result.shortlist_validation.items():
        print(f"  {name:56s} {value:+.3f}{'   <- selected' if name == result.selected_shortlist else ''}")
    print("oracle_nearest reads the TEST truth to pick neighbours: the ceiling of neighbour-based rankings, "
          "not a method")
    print("\nTEST (held-out datasets; leave-models-out ranks only the held-out models):")
    print(summary_markdown(result.summary("test")))
    test_rows = result.rows[result.rows["split"] == "test"]
    print("\nTEST, paired by fold: method minus the data-free prior, weighted tau (truth-ordered); "
          "mean +- standard error over folds, folds where the method is better:")
    print_paired(paired_differences(test_rows, "prior"))
    print("TEST, paired by fold: rankers minus the nearest-dataset baseline (the goal: at least +0.05):")
    vs_nearest = paired_differences(test_rows, "nearest")
    print_paired(vs_nearest[vs_nearest["method"].str.startswith("ranker")])
    print("TEST, paired by fold: method minus LogME on all models (the two-stage goal: within 0.02):")
    vs_logme = paired_differences(test_rows, "logme")
    print_paired(vs_logme[vs_logme["method"].str.startswith("two_stage")])


def print_paired(differences) -> None:  # noqa: ANN001 - a paired_differences frame
    for row in differences.itertuples():
        print(f"  {row.protocol:7s} {row.method:48s} {row.mean_difference:+.3f} +- {row.standard_error:.3f}"
              f"   better in {row.folds_better}/{row.n_folds}")


if __name__ == "__main__":
    main()
