"""The ML of the model recommender: no Dagster, no orchestration, pure functions and typed objects.

Packages in layers, each importing only the ones before it here (``tests/test_layout.py`` checks it):

* :mod:`ml_core.artifacts` -- storage (atomic publication), partition keys, input fingerprints;
  beside it the shared modules :mod:`ml_core.trainer` (``BaseTrainer``), :mod:`ml_core.metrics`
  (ranking metrics on scores), :mod:`ml_core.configs` (nested config dataclasses) and
  :mod:`ml_core.progress` (progress bars);
* :mod:`ml_core.weights` -- checkpoints, flattening, the autoencoder, model embeddings, cards;
* :mod:`ml_core.images` -- image folders, image encoders, dataset tokens;
* :mod:`ml_core.ground_truth` -- performance tables, measured transfer, transferability, ranks;
* :mod:`ml_core.ranking` -- rankers, their data, losses, training, shortlists, recommendations,
  and every baseline;
* :mod:`ml_core.evaluation` -- held-out folds, the comparison of methods, the history study.
"""
