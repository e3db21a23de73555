"""AutoEncoder: shapes, masked loss, normalisation fitted on training models only, a step lowers the loss,
the training sample bounded by a total chunk budget whatever the number of models."""

import numpy as np
import torch

from ml_core.trainer import TrainerConfig
from ml_core.weights import (
    AutoEncoder,
    AutoEncoderArtifact,
    AutoEncoderConfig,
    AutoEncoderTrainingConfig,
    ChunkNormalizer,
    ModelEmbedding,
    StateDictReader,
    chunk_quotas,
    embed_model,
    pool_codes,
    read_model_parameters,
    reconstruction_loss,
    train_autoencoder,
    write_model_parameters,
)

SMALL = AutoEncoderConfig(input_dim=256, hidden_dim=64, code_dim=16, dropout=0.0)


def test_shapes_match_the_design():
    model = AutoEncoder(AutoEncoderConfig())
    recon, code = model(torch.zeros(3, 8192))
    assert recon.shape == (3, 8192) and code.shape == (3, 512)
    assert [m.out_features for m in model.encoder if isinstance(m, torch.nn.Linear)] == [1024, 512]


def test_padding_never_counts_in_the_loss():
    target = torch.zeros(2, 256)
    recon = torch.zeros(2, 256)
    recon[:, 200:] = 100.0  # huge error only on padded positions
    mask = torch.zeros(2, 256, dtype=torch.bool)
    mask[:, :200] = True
    assert reconstruction_loss(recon, target, mask, SMALL).item() == 0.0


def _store_models(tmp_path, n=4, scale=None):
    out = {}
    for i in range(n):
        g = torch.Generator().manual_seed(i)
        s = scale[i] if scale else 1.0
        sd = {"a": torch.randn(700, generator=g) * s, "b": torch.randn(300, generator=g) * s}
        write_model_parameters(StateDictReader(tmp_path / f"m{i}.pt", sd), tmp_path / f"m{i}", chunk_size=256)
        out[f"m{i}"] = read_model_parameters(tmp_path / f"m{i}")
    return out


def test_normalizer_is_fitted_on_training_models_only(tmp_path):
    models = _store_models(tmp_path, n=4, scale=[1.0, 1.0, 1.0, 50.0])
    config = AutoEncoderTrainingConfig(
        model=SMALL, trainer=TrainerConfig(epochs=1, scheduler="none"), val_fraction=0.25, seed=3
    )
    artifact, _ = train_autoencoder(models, config)
    val = artifact.info["val_models"]
    assert len(val) == 1 and set(artifact.info["train_models"]) | set(val) == set(models)
    train_chunks = np.concatenate([np.asarray(models[m].chunks[:]) for m in artifact.info["train_models"]])
    train_mask = np.concatenate([models[m].valid_mask() for m in artifact.info["train_models"]])
    expected = ChunkNormalizer.fit(train_chunks, train_mask)
    assert artifact.normalizer.std == np.float64(expected.std).item()


def test_training_lowers_the_loss_and_artifact_round_trips(tmp_path):
    models = _store_models(tmp_path, n=3)
    config = AutoEncoderTrainingConfig(
        model=SMALL, trainer=TrainerConfig(epochs=8, lr=3e-3, scheduler="none"), val_fraction=0.0
    )
    artifact, history = train_autoencoder(models, config, tmp_path / "train")
    losses = [r["train_loss"] for r in history.epochs]
    assert losses[-1] < losses[0]
    assert (tmp_path / "train" / "history.json").exists()
    artifact.save(tmp_path / "ae")
    loaded = AutoEncoderArtifact.load(tmp_path / "ae")
    chunks, mask = np.asarray(models["m0"].chunks[:]), models["m0"].valid_mask()
    np.testing.assert_array_equal(artifact.encode_chunks(chunks, mask), loaded.encode_chunks(chunks, mask))


def test_pooling_weights_chunks_by_real_values():
    codes = np.array([[1.0, 0.0], [3.0, 2.0], [100.0, 100.0]], dtype=np.float32)
    weights = np.array([1.0, 1.0, 0.0], dtype=np.float32)  # last chunk all padding
    token, segments = pool_codes(codes, weights + np.array([0, 0, 1e-9], dtype=np.float32), 2)
    np.testing.assert_allclose(token, [2.0, 1.0], atol=1e-4)
    assert segments.shape == (2, 2)


def test_embedding_covers_every_chunk(tmp_path):
    models = _store_models(tmp_path, n=2)
    config = AutoEncoderTrainingConfig(model=SMALL, trainer=TrainerConfig(epochs=1, scheduler="none"))
    artifact, _ = train_autoencoder(models, config)
    embedding = embed_model(models["m1"], artifact, batch_rows=2, n_segments=3)
    assert embedding.codes.shape == (models["m1"].n_chunks, 16)
    assert embedding.segment_tokens.shape == (3, 16)
    embedding.save(tmp_path / "e")
    assert ModelEmbedding.load(tmp_path / "e").content_hash() == embedding.content_hash()


def test_chunk_quotas_stay_within_the_budget_whatever_the_zoo():
    for n_models in (1, 3, 10, 100, 1000):
        counts = {f"m{i}": 1 + (i * 37) % 700 for i in range(n_models)}  # 1 to 700 chunks each
        for budget in (1, 5, 64, 1000, 16384):
            quotas = chunk_quotas(counts, budget, 512, np.random.default_rng(0))
            assert set(quotas) == set(counts)
            assert sum(quotas.values()) <= budget
            assert all(0 <= quotas[m] <= min(counts[m], 512) for m in counts)
            if budget >= n_models:  # one chunk per model fits: every model gives at least one
                assert min(quotas.values()) >= 1
            else:
                assert sum(quotas.values()) == budget
            assert quotas == chunk_quotas(counts, budget, 512, np.random.default_rng(0))  # seeded
    # below the budget, the seed's sample: every model's min(n_chunks, max_chunks_per_model)
    assert chunk_quotas({"a": 3, "b": 900}, 16384, 512, np.random.default_rng(0)) == {"a": 3, "b": 512}
    # past it, one level for all: small models keep theirs, large ones are cut to what is left
    assert chunk_quotas({"a": 3, "b": 900, "c": 900}, 103, 512, np.random.default_rng(0)) == {"a": 3, "b": 50, "c": 50}


def test_training_sample_is_bounded_covers_every_model_and_is_seeded(tmp_path):
    models = _store_models(tmp_path, n=12)  # 4 chunks of 256 values each
    def train(budget, seed=0):
        config = AutoEncoderTrainingConfig(model=SMALL, trainer=TrainerConfig(epochs=1, scheduler="none"),
                                           val_fraction=0.25, max_total_chunks=budget, seed=seed)
        return train_autoencoder(models, config)[0]

    everything = train(10_000)  # below the budget: every chunk of every model, as before the budget
    assert everything.info["n_train_chunks"] + everything.info["n_val_chunks"] == 12 * 4
    one_each = train(12)
    assert (one_each.info["n_train_chunks"], one_each.info["n_val_chunks"]) == (9, 3)  # 9 + 3 models
    for budget in (1, 5, 20, 30):
        info = train(budget).info
        assert 1 <= info["n_train_chunks"] and info["n_train_chunks"] + info["n_val_chunks"] <= budget
    again, other = train(20), train(20, seed=1)
    assert again.normalizer == train(20).normalizer  # the same seed samples the same chunks
    assert again.normalizer != other.normalizer
