"""Do model embeddings mean anything? Probes on held-out models, and the leave-models-out ranker, in one run.

For every seed, models are cut into folds; per fold each weight embedder is retrained on the other
models' weights alone, and linear probes fitted on their embeddings predict the held-out models'
architecture, source task, source accuracy and mean transfer accuracy
(:mod:`ml_core.evaluation.probes`). Describers, all on the same folds:

* ``embedding``: the store's current weight embedder (the ``autoencoder`` asset's config: the token
  encoder by default), pooled as the ``model_embeddings`` asset pools it;
* ``embedding_rows`` / ``embedding_neurons``: the same token encoder with the other way of permuting
  its contrastive views (``tokens.permutation``: today's row shuffle, or function-preserving neuron
  permutations, :mod:`ml_core.weights.permutations`), so that both are scored on the same folds and
  seeds, paired;
* ``embedding+corpus``: the same token encoder also trained on the corpus of each training model
  (``--corpus``, by default the world's ``snapshots/``: the intermediate checkpoints of each small
  model's own pre-training run, :mod:`ml_core.weights.corpus`); a held-out model's run is never seen;
* ``chunk_autoencoder``: the seed's 8192 -> 1024 -> 512 chunk autoencoder, pooled as the seed did (the
  mean code): the baseline;
* ``weight_statistics``, ``counts``, ``random``: the bars.

With ``--ranking`` it also runs the leave-models-out evaluation (the ranker trained on the other
models, ranking the held-out ones, tokens from an embedder that never saw them) with each
embedder's tokens, beside source similarity, the prior and LogME, paired by fold.

    .venv/bin/python -m benchmarks.embedding_probes                       # after `make demo`
    .venv/bin/python -m benchmarks.embedding_probes --seeds 0 1 2 --ranking
    .venv/bin/python -m benchmarks.embedding_probes --corpus none       # no corpus describer
    .venv/bin/python -m benchmarks.embedding_probes --corpus-negatives no --corpus-from-epoch 7 --skip other_views
"""

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.ranking_quality import add_store_arguments, commit, open_store
from ml_core.evaluation import EvaluationConfig, evaluate, evaluation_folds, paired_differences, retrained_tokens
from ml_core.evaluation.probes import (
    TRIVIAL,
    ProbeConfig,
    beats_trivial,
    embedder_describer,
    model_properties,
    probe_markdown,
    probe_verdict,
    run_probes,
)
from ml_core.weights import EmbeddingConfig, WeightEmbedderConfig, discover_corpus, embed, flatten_corpus, train_embedder
from pipelines.readers import autoencoder_training, ground_truth, model_parameters
from resources.model_zoo import ModelZoo

BASELINE = WeightEmbedderConfig(method="chunk_autoencoder")
BASELINE_POOLING = EmbeddingConfig(token_segments=0, structure=False)  # the seed's model token: the mean chunk code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_store_arguments(parser)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--ranking", action="store_true", help="also the leave-models-out ranker, per embedder")
    parser.add_argument("--corpus", default=None, help="the embedder's extra corpus folder (<model>/<checkpoint>; "
                        "default: the world's snapshots/ beside --zoo, where there is one); 'none': no corpus")
    parser.add_argument("--corpus-cache", default=None, help="where the corpus is flattened once (default: "
                        "<store>/../corpus_parameters)")
    parser.add_argument("--corpus-from-epoch", type=int, default=0,
                        help="only corpus checkpoints whose card says at least this many pre-training epochs")
    parser.add_argument("--corpus-negatives", choices=["yes", "no"], default=None,
                        help="for embedding+corpus: do a run's other checkpoints count among a window's contrastive "
                        "negatives (default: as the store's autoencoder config says)")
    parser.add_argument("--corpus-views", choices=["checkpoint", "run"], default=None,
                        help="for embedding+corpus: 'run' draws a window's second view from any checkpoint of its run")
    parser.add_argument("--skip", nargs="*", default=[], choices=["other_views", "chunk_autoencoder"],
                        help="leave out these extra describers (each costs one embedder training per fold and seed)")
    args = parser.parse_args()

    start = time.perf_counter()
    store, data = open_store(args)
    params = model_parameters(store)
    training = autoencoder_training(store)
    cards = {e.key: e.card() for e in ModelZoo(root=args.zoo).entries() if e.key in params}
    properties = model_properties(cards, ground_truth(store))
    extra = {}
    variant = None
    if training.method == "token_encoder" and "other_views" not in args.skip:
        other = "neurons" if training.tokens.permutation == "rows" else "rows"
        variant = (f"embedding_{other}", dataclasses.replace(training, tokens=dataclasses.replace(training.tokens, permutation=other)))
        extra[variant[0]] = lambda seed: embedder_describer(params, variant[1].with_seed(seed))
    corpus_dir, corpus = open_corpus(args, set(params))
    changes = {"corpus_negatives": None if args.corpus_negatives is None else args.corpus_negatives == "yes",
               "corpus_views": args.corpus_views}
    corpus_training = dataclasses.replace(training, tokens=dataclasses.replace(
        training.tokens, **{k: v for k, v in changes.items() if v is not None}))
    if corpus:
        extra["embedding+corpus"] = lambda seed: embedder_describer(params, corpus_training.with_seed(seed), corpus=corpus)
    if "chunk_autoencoder" not in args.skip:
        extra["chunk_autoencoder"] = lambda seed: embedder_describer(params, BASELINE.with_seed(seed), BASELINE_POOLING)
    frame = run_probes(params, properties, training, ProbeConfig(n_folds=args.folds, seeds=tuple(args.seeds)),
                       extra=extra)
    seconds = time.perf_counter() - start
    if args.out:
        frame.to_parquet(args.out, index=False)

    print(f"embedding probes | commit {commit()} | seeds {args.seeds} | store {args.store}")
    if corpus:
        print(f"corpus: {sum(map(len, corpus.values()))} checkpoints of {len(corpus)} models ({corpus_dir}); "
              "each fold trains embedding+corpus on the training models' corpus only; a run's other checkpoints "
              f"{'are' if corpus_training.tokens.corpus_negatives else 'are not'} contrastive negatives")
    print(f"{len(params)} models, {args.folds} model folds per seed; embedder: {training.method}"
          f"{f' (views: {training.tokens.permutation})' if training.method == 'token_encoder' else ''}; "
          f"{seconds:.0f} s on this CPU")
    print("held-out models (each embedder retrained without them). architecture / source: accuracy (source: "
          "descriptors centred per architecture); source_accuracy / mean_transfer: R^2 of the pooled held-out "
          "predictions; mean +- std over seeds\n")
    print(probe_markdown(frame))
    for name in [d for d in ("embedding", "embedding+corpus", "chunk_autoencoder") if d in set(frame["describer"])]:
        margins = beats_trivial(frame, name, TRIVIAL)
        per_seed = {prop: [beats_trivial(frame[frame["seed"] == s], name, TRIVIAL)[prop] for s in args.seeds]
                    for prop in margins}
        print(f"\n{name} minus the best trivial describer, per property (mean over seeds; seeds where it is better):")
        for prop, margin in margins.items():
            print(f"  {prop:16s} {margin:+.3f}   better in {sum(m > 0 for m in per_seed[prop])}/{len(args.seeds)} seeds")
        verdict = probe_verdict(frame, name, ProbeConfig().min_properties_beaten, TRIVIAL)
        print(f"  beaten: {', '.join(verdict['beaten']) or 'none'}; tied at the ceiling: "
              f"{', '.join(verdict['ceiling_ties']) or 'none'}; the check would {'PASS' if verdict['passed'] else 'FAIL'}")
    scores = frame.pivot_table(index=["seed", "property"], columns="describer", values="score")
    for other in ([variant[0]] if variant else []) + (["embedding+corpus"] if corpus else []):
        views = f" (views: {training.tokens.permutation})" if training.method == "token_encoder" else ""
        print(f"\n{other} minus embedding{views}, paired by seed (same folds), per property: mean, and seeds "
              "where it is higher:")
        for prop in ("architecture", "source", "source_accuracy", "mean_transfer"):
            diff = (scores[other] - scores["embedding"]).xs(prop, level="property")
            print(f"  {prop:16s} {diff.mean():+.3f}   higher in {int((diff > 0).sum())}/{len(diff)} seeds   "
                  f"per seed {' '.join(f'{d:+.3f}' for d in diff)}")
    runs = [("embedding", training, None)] + ([(*variant, None)] if variant else [])
    runs += [("embedding+corpus", corpus_training, corpus)] if corpus else []
    print("\ntraining the embedder on all the models once (as the autoencoder asset does), seed 0:")
    for name, config, extra_weights in runs:
        tic = time.perf_counter()
        artifact, history = train_embedder(dict(params.items()), config.with_seed(0), corpus=extra_weights)
        views = f"views {config.tokens.permutation:8s} " if config.method == "token_encoder" else ""
        print(f"  {name:18s} {views}{time.perf_counter() - tic:6.1f} s, {len(history.epochs)} epochs, "
              f"held-out relative MSE {artifact.info['relative_mse']:.4f}")
    if args.ranking:
        print()
        ranking_comparison(data, params, training, args.seeds, corpus, corpus_training)


def open_corpus(args: argparse.Namespace, models: set[str]) -> tuple[Path | None, dict]:
    """The folder of ``--corpus`` (or the world's ``snapshots/``) and its flattened corpus, for the zoo's
    models only; ``(None, {})`` when there is none."""
    folder = None if args.corpus == "none" else Path(args.corpus or Path(args.zoo).parent / "snapshots")
    if folder is None or (args.corpus is None and not folder.is_dir()):
        return None, {}
    found = {m: [p for p in paths if _epochs(p) >= args.corpus_from_epoch]
             for m, paths in discover_corpus(folder).items() if m in models}
    cache = Path(args.corpus_cache) if args.corpus_cache else Path(args.store).parent / "corpus_parameters"
    return folder, flatten_corpus(found, cache)


def _epochs(checkpoint: Path) -> int:
    """The pre-training epochs a corpus checkpoint's card records (0 without a card or the field)."""
    card = checkpoint.with_suffix(".json")
    return int(json.loads(card.read_text()).get("pretrain_epochs") or 0) if card.is_file() else 0


def ranking_comparison(data, params, training: WeightEmbedderConfig, seeds: list[int], corpus: dict,  # noqa: ANN001
                       corpus_training: WeightEmbedderConfig) -> None:
    """Leave-models-out test weighted tau of the default ranker with each embedder's tokens, paired by fold."""
    rows = []
    embedders = [("embedding", training, EmbeddingConfig(), None)]
    embedders += [("embedding+corpus", corpus_training, EmbeddingConfig(), corpus)] if corpus else []
    embedders += [("chunk_autoencoder", BASELINE, BASELINE_POOLING, None)]
    for name, config, pooling, extra_weights in embedders:
        for seed in seeds:
            seeded = config.with_seed(seed)
            artifact, _ = train_embedder(dict(params.items()), seeded, corpus=extra_weights)
            tokens = np.stack([embed(params[m], artifact, pooling).token for m in data.model_names])
            seeded_data = dataclasses.replace(data, model_tokens=tokens)
            evaluation = EvaluationConfig(variants=("default",), seed=seed)
            folds = [f for f in evaluation_folds(seeded_data, evaluation) if f.kind == "models"]
            without = retrained_tokens(params, seeded, data.model_names, pooling, extra_weights)
            result = evaluate(seeded_data, folds, evaluation, without)
            test = result.rows[result.rows["split"] == "test"].assign(embedder=name, seed=seed)
            rows.append(test)
    rows = pd.concat(rows, ignore_index=True)
    per_fold = rows.groupby(["embedder", "seed", "fold", "method"])["weighted_tau_truth"].mean().reset_index()
    means = per_fold.groupby(["embedder", "method"])["weighted_tau_truth"].agg(["mean", "std"])
    print("leave-models-out TEST weighted tau (truth-ordered), mean over folds and seeds +- std:")
    reads_weights = ("ranker", "weight_neighbours", "source+weights")
    for (embedder, method), row in means.iterrows():
        if method.startswith(reads_weights) or embedder == "embedding":
            label = f"{method} ({embedder} tokens)" if method.startswith(reads_weights) else method
            print(f"  {label:56s} {row['mean']:+.3f} +- {row['std']:.3f}")
    print("paired by fold and seed: what reads the weights minus source similarity, and minus the prior:")
    for embedder in [e[0] for e in embedders]:
        sub = rows[rows["embedder"] == embedder].assign(fold=lambda f: f["seed"].astype(str) + ":" + f["fold"])
        for baseline in ("source_similarity", "prior"):
            diff = paired_differences(sub, baseline)
            for row in diff[diff["method"].str.startswith(reads_weights)].itertuples():
                print(f"  {embedder:18s} {row.method:36s} - {baseline:18s} {row.mean_difference:+.3f} +- "
                      f"{row.standard_error:.3f}   better in {row.folds_better}/{row.n_folds}")


if __name__ == "__main__":
    main()
