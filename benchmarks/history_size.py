"""How ranking quality grows with the history: the product's ranker and the baselines on held-out
families, trained on 1, 2, 4, ... of each fold's training families, and on held-out datasets whose
relatives (same family) are in the history.

The learned ranker and nearest-dataset rank a new dataset from past results. In the demo world
most held-out families have no relative left in training, and leave-family-out scores them that
way. This benchmark asks what more history would buy:

* **history size**: every leave-family-out fold keeps a seeded random subset of its training
  families (``--repeats`` subsets per size; validation and test data unchanged), and the gain of
  each method over the data-free prior *of the same history* is reported per size, with its
  standard error over folds. The slope of the ranker's gain per doubling of the history is
  bootstrapped over folds.
* **relatives in the history** (leave-dataset-out): each dataset of a family with several members
  is held out alone with its relatives in training, paired with the same dataset held out with
  its family. This leaks what the headline protocol forbids, on purpose: it measures what one
  relative in the history is worth.

The ranker is the evaluation's ``linear+baselines`` variant (the product's architecture and inputs,
``ml_core.ranking.product_ranker``; the variant trains with ListMLE where the product uses a pairwise loss), and
``oracle_nearest`` reads the test truth (the ceiling of neighbour-based rankings, not a method).
Test folds choose nothing here: no variant is selected. Run ``make demo`` first.

    .venv/bin/python -m benchmarks.history_size              # about 3 min on 2 CPU cores
    .venv/bin/python -m benchmarks.history_size --repeats 5 --sizes 1,2,4,8
"""

import argparse
import time
from pathlib import Path

from benchmarks.ranking_quality import add_store_arguments, commit, open_store
from ml_core.evaluation import (
    ALL,
    EvaluationConfig,
    doubling_slope,
    history_jobs,
    leave_family_out_folds,
    mean_and_standard_error,
    relatives_table,
    run_history_study,
    size_table,
)

PRODUCT_VARIANT = "linear+baselines"  # the product's architecture and inputs (see the docstring)
RANKER = f"ranker:{PRODUCT_VARIANT}"
METHODS = ("prior", "nearest", "nearest_source_profile", "source_similarity", RANKER, "oracle_nearest", "logme")
SHORT = {RANKER: "ranker", "source_similarity": "source", "oracle_nearest": "oracle*",
         "nearest_source_profile": "profile"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_store_arguments(parser)
    parser.add_argument("--sizes", default="1,2,4,7",
                        help="training families kept per fold (the full history is added)")
    parser.add_argument("--repeats", type=int, default=3, help="random subsets of families per size")
    args = parser.parse_args()

    start = time.perf_counter()
    _, data = open_store(args)
    config = EvaluationConfig(variants=(PRODUCT_VARIANT,), seed=args.seed)
    family_folds = leave_family_out_folds(data.dataset_names, data.families, val_families=config.val_families,
                                          seed=args.seed)
    jobs = history_jobs(family_folds, data.families, [int(s) for s in args.sizes.split(",")],
                        repeats=args.repeats, seed=args.seed)
    rows = run_history_study(data, jobs, config)
    seconds = time.perf_counter() - start
    if args.out:
        rows.to_parquet(Path(args.out), index=False)

    print(f"history size | commit {commit()} | seed {args.seed} | store {args.store}")
    print(f"{len(data.model_names)} models, {len(data.dataset_names)} datasets in "
          f"{len(set(data.families.values()))} families; {len(jobs)} folds; {seconds:.0f} s on this CPU")
    print("test weighted tau (truth-ordered); ranker = the linear+baselines variant; "
          "oracle* reads the test truth (a ceiling, not a method)")

    table = size_table(rows, METHODS)
    print(f"\nHISTORY SIZE (leave-family-out, {len(family_folds)} held-out families; {ALL!r} = every training "
          f"family of the fold, {args.repeats} random subsets per smaller size):")
    print("the prior's weighted tau, and each method minus the prior of the same history: "
          "mean +- standard error over folds")
    others = [m for m in METHODS if m != "prior"]
    print("| training families | training datasets | prior | " + " | ".join(
        f"{SHORT.get(m, m)} - prior" for m in others) + " |")
    print("| --- " * (3 + len(others)) + "|")
    for size, part in sorted(table.groupby("size"), key=lambda kv: kv[1]["n_train"].mean()):
        cells = [size, f"{part['n_train'].mean():.1f}", f"{part['prior'].mean():+.3f}"]
        for method in others:
            mean, se = mean_and_standard_error(part[method] - part["prior"])
            cells.append(f"{mean:+.3f} ± {se:.3f}")
        print("| " + " | ".join(cells) + " |")
    for method in (RANKER, "nearest", "nearest_source_profile", "oracle_nearest"):
        slope, low, high = doubling_slope(table, method, seed=args.seed)
        print(f"{SHORT.get(method, method):8s} gain over the prior per doubling of the training datasets: "
              f"{slope:+.3f} (5-95% bootstrap over folds: {low:+.3f} to {high:+.3f})")

    with_family, alone = relatives_table(rows, METHODS)
    print(f"\nRELATIVES IN THE HISTORY: the {len(alone)} datasets of families with several members, each held out "
          "alone with its relatives in training, paired with the same dataset held out with its family:")
    print("| method | family held out | relatives in training | difference (± se over datasets) |")
    print("| --- | --- | --- | --- |")
    for method in METHODS:
        mean, se = mean_and_standard_error(alone[method] - with_family[method])
        print(f"| {SHORT.get(method, method)} | {with_family[method].mean():+.3f} | {alone[method].mean():+.3f} "
              f"| {mean:+.3f} ± {se:.3f} |")
    for name, frame in (("the family held out", with_family), ("its relatives in training", alone)):
        mean, se = mean_and_standard_error(frame[RANKER] - frame["prior"])
        print(f"ranker minus prior with {name}: {mean:+.3f} ± {se:.3f}")


if __name__ == "__main__":
    main()
