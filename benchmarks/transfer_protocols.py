"""How the two transfer protocols agree, and how much the measured table spreads, on the demo world.

For every (zoo model, target dataset) of the demo world it measures the transfer accuracy twice,
with the default FINE-TUNE protocol (head + last block) and with the LINEAR-PROBE protocol
(:mod:`ml_core.ground_truth.transfer`), on one torch thread, and prints:

* per dataset: the best model by each protocol, Spearman rho and weighted tau (truth-ordered:
  fine-tune accuracy as the truth, probe accuracy as the score) between the two columns, and
  whether the fine-tune column is degenerate (:func:`ml_core.ground_truth.transfer.assess_spread`);
* overall: mean / median agreement, how often the two pick the same best model, the spread of each
  table (distinct best models, regret of always picking the overall best), how much of the
  dataset-centred fine-tune accuracy the source task and the architecture explain, and the time
  each protocol took.

    .venv/bin/python -m benchmarks.transfer_protocols                 # full demo world (.work/demo_world)
    .venv/bin/python -m benchmarks.transfer_protocols --scale reduced  # the tests' reduced world, seconds

``--results FILE`` keeps the measured cells as JSON and reuses them on the next run.
"""

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from ml_core.artifacts import read_json, write_json
from ml_core.ground_truth import (
    TransferProtocol,
    assess_spread,
    load_split,
    load_zoo_model,
    measure_transfer,
    table_spread,
)
from ml_core.metrics import spearman, weighted_tau
from ml_core.weights import ModelCard
from resources.settings import demo_world_dir, work_dir
from worlds import build_world

PROTOCOLS = {"finetune": TransferProtocol(kind="finetune"), "linear_probe": TransferProtocol(kind="linear_probe")}


def measure(world, results: dict) -> dict[str, float]:
    """Fill ``results[protocol][dataset][model]`` = cell dict; returns seconds per protocol."""
    seconds = {p: 0.0 for p in PROTOCOLS}
    cards = {m: ModelCard.read(world.zoo_dir / f"{m}.json") for m in world.model_names}
    for dataset in world.dataset_names:
        folder = world.datasets_dir / dataset
        train = load_split(folder, "train")
        test = load_split(folder, "test", train.classes)
        for name, protocol in PROTOCOLS.items():
            column = results.setdefault(name, {}).setdefault(dataset, {})
            for model in world.model_names:
                if model in column:
                    continue
                net = load_zoo_model(world.zoo_dir / f"{model}.safetensors", cards[model])
                cell = measure_transfer(net, cards[model], train, test, protocol).to_dict()
                column[model] = cell
                seconds[name] += cell["seconds"]
        print(f"  measured {dataset}", flush=True)
    return seconds


def variance_shares(ft: dict[str, dict[str, dict]], cards: dict[str, dict]) -> tuple[float, float]:
    """Share of the dataset-centred fine-tune accuracy variance explained by source task and by
    architecture (group means within each dataset; the small pre-trained nets only)."""
    rows = [(d, cards[m]["source_task"], cards[m]["architecture"], c["accuracy"])
            for d, col in ft.items() for m, c in col.items() if cards[m]["architecture"] != "efficientnet_lite0"]
    acc = np.array([r[3] for r in rows])
    dataset_mean = {d: np.mean([r[3] for r in rows if r[0] == d]) for d in {r[0] for r in rows}}
    centred = acc - np.array([dataset_mean[r[0]] for r in rows])
    total = float((centred**2).sum())

    def share(index: int) -> float:
        groups: dict[tuple, list[float]] = {}
        for r, c in zip(rows, centred, strict=True):
            groups.setdefault((r[0], r[index]), []).append(c)
        return float(sum(len(v) * np.mean(v) ** 2 for v in groups.values()) / total) if total else float("nan")

    return share(1), share(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["full", "reduced"], default="full")
    parser.add_argument("--root", type=Path, default=None, help="world folder (default .work/demo_world[_reduced])")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=None, help="JSON file keeping the measured cells")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)  # tiny nets: one thread is faster and deterministic

    root = args.root or (demo_world_dir() if args.scale == "full" else work_dir() / f"demo_world_{args.scale}")
    start = time.perf_counter()
    world = build_world(root, scale=args.scale, seed=args.seed)
    print(f"world {world.root} ({args.scale}): {len(world.model_names)} models x {len(world.dataset_names)} "
          f"datasets, ready in {time.perf_counter() - start:.1f} s; measuring both protocols on 1 thread")
    results = read_json(args.results) if args.results and args.results.is_file() else {}
    seconds = measure(world, results)
    if args.results:
        write_json(args.results, results)

    ft, lp = results["finetune"], results["linear_probe"]
    models = list(world.model_names)
    cards = {m: read_json(world.zoo_dir / f"{m}.json") for m in models}
    print(f"\n{'dataset':22s} {'cls':>3s} {'train':>5s} {'test':>4s}  {'best fine-tune':28s} {'acc':>5s}  "
          f"{'best linear probe':28s} {'acc':>5s}  {'rho':>6s} {'wtau':>6s}  fine-tune column")
    rhos, taus, same_best, informative = [], [], 0, []
    for d in world.dataset_names:
        f = np.array([ft[d][m]["accuracy"] for m in models])
        p = np.array([lp[d][m]["accuracy"] for m in models])
        cell = ft[d][models[0]]
        spread = assess_spread(f, chance=cell["chance"], n_test=cell["n_test"])
        rho, tau = spearman(f, p), weighted_tau(f, p, convention="truth")
        bf, bp = models[int(f.argmax())], models[int(p.argmax())]
        same_best += bf == bp
        if not spread.degenerate:
            informative.append(d)
            rhos.append(rho)
            taus.append(tau)
        print(f"{d:22s} {cell['n_classes']:3d} {cell['n_train']:5d} {cell['n_test']:4d}  {bf:28s} {f.max():5.3f}  "
              f"{bp:28s} {p.max():5.3f}  {rho:+6.2f} {tau:+6.2f}  "
              f"{'DEGENERATE: ' + spread.reason if spread.degenerate else f'spread {spread.spread:.3f}'}")

    print(f"\nprotocol agreement over the {len(informative)} informative datasets (fine-tune = truth):")
    print(f"  Spearman rho: mean {np.nanmean(rhos):+.3f}, median {np.nanmedian(rhos):+.3f}")
    print(f"  weighted tau (truth-ordered): mean {np.nanmean(taus):+.3f}, median {np.nanmedian(taus):+.3f}")
    print(f"  same best model: {same_best} of {len(world.dataset_names)} datasets")
    for name, table in (("fine-tune", ft), ("linear probe", lp)):
        s = table_spread({d: {m: table[d][m]["accuracy"] for m in models} for d in informative or world.dataset_names})
        print(f"  {name:12s} table: {s.n_distinct_best} distinct best models over {s.n_datasets} datasets; always "
              f"picking {s.overall_best} costs {100 * s.regret_of_overall_best_mean:.1f} points on average "
              f"({100 * s.regret_of_overall_best_max:.1f} at worst)")
    source_share, arch_share = variance_shares({d: ft[d] for d in world.dataset_names}, cards)
    print(f"  dataset-centred fine-tune accuracy variance explained by source task {source_share:.0%}, "
          f"by architecture {arch_share:.0%} (small nets)")
    print(f"  time: fine-tune {seconds['finetune']:.1f} s, linear probe {seconds['linear_probe']:.1f} s "
          f"(cells measured in this run; 1 thread)")


if __name__ == "__main__":
    main()
