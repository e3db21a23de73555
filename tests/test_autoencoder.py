"""AutoEncoder: shapes, masked loss, normalisation fitted on training models only, a step lowers the loss."""

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
