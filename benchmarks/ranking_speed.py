"""Time to rank a zoo of N models for one dataset whose tokens exist (DESIGN budget: 10,000 models
in < 100 ms), against the nearest-dataset baseline on the same inputs, measured in the same run.

Two rankers, with random weights (speed does not depend on what they learned): the product's
default, the linear weighting of the four inputs (prior, nearest-dataset, source similarity, weight
neighbours), and the heaviest of the asset's choices, cross-attention over the tokens plus the same
inputs. Stand-in inputs: random model tokens (512-d) and source descriptors, a dataset of 10 classes
with 1280-d features, 15 reference datasets, every model in the reference (the weight-neighbours
input then compares each model with all others: the most work).

    .venv/bin/python -m benchmarks.ranking_speed --models 10000
"""

import argparse
import time

import numpy as np
import torch

from ml_core.images import DatasetTokens, dataset_descriptor
from ml_core.ranking import (
    BaselineReference,
    ModelTokenNormalizer,
    RankerArtifact,
    RankerConfig,
    RankerTrainingConfig,
    RankingCrossAttentionTransformer,
)
from ml_core.ranking.baselines import nearest_dataset_scores


def best_of(fn, repeats: int = 7) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n, dim = args.models, 1280
    names = [f"m{i}" for i in range(n)]
    model_tokens = rng.normal(size=(n, 512)).astype(np.float32)
    features = rng.normal(size=(8, 10, dim)).astype(np.float32)
    tokens = DatasetTokens(features=features, valid=np.ones((8, 10), bool), class_names=[str(i) for i in range(10)], attrs={})
    descriptors = rng.normal(size=(15, dim))
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    # every model in the reference, with its weight-embedding token: the weight-neighbours input compares
    # each model with all others (N x N similarities), the most work
    reference = BaselineReference([f"d{i}" for i in range(15)], names, rng.uniform(size=(15, n)), descriptors,
                                  {f"d{i}": f"f{i}" for i in range(15)}, model_tokens=model_tokens.astype(np.float64))
    target = dataset_descriptor(tokens)
    baseline = best_of(lambda: nearest_dataset_scores(target, descriptors, reference.accuracy))
    sources = rng.normal(size=(n, dim))  # every model with a source sample: the most work
    print(f"{n} models, torch threads {torch.get_num_threads()}, this CPU (stand-in random inputs)")
    print(f"baseline: nearest-dataset scores   {1000 * baseline:7.2f} ms")
    for architecture in ("linear", "cross_attention"):
        config = RankerTrainingConfig(
            model=RankerConfig(architecture=architecture, baseline_features=True, dataset_token_dim=dim,
                               model_token_dim=512),
            token_mode="class_means",
        )
        model = RankingCrossAttentionTransformer(config.model)
        artifact = RankerArtifact(model, config, ModelTokenNormalizer.fit(model_tokens), {}, reference)
        artifact.score(tokens, model_tokens + 1.0, names, sources)  # warm torch up on another model set
        start = time.perf_counter()  # the first dataset of a model set also finds each model's neighbours
        artifact.score(tokens, model_tokens, names, sources)
        cold = time.perf_counter() - start
        ranker = best_of(lambda: artifact.score(tokens, model_tokens, names, sources))  # every later dataset
        print(f"{architecture:16s} ranker (4 inputs{' + cross-attention forward' if architecture != 'linear' else ''}) "
              f"{1000 * ranker:8.2f} ms = {ranker / baseline:7.1f} x baseline; budget 100 ms: "
              f"{'met' if ranker < 0.1 else 'MISSED'}")
        print(f"  the first dataset of a model set (each model's {reference.neighbour_k} weight neighbours found, then "
              f"kept) {1000 * cold:8.2f} ms")


if __name__ == "__main__":
    main()
