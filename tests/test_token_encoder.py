"""WeightTokenEncoder: shapes, views from one model, held-out figures, streaming embedding, round trip."""

import numpy as np
import torch

from ml_core.trainer import TrainerConfig
from ml_core.weights import (
    EmbeddingConfig,
    StateDictReader,
    TokenEncoderArtifact,
    TokenEncoderConfig,
    TokenEncoderTrainingConfig,
    WeightEmbedderConfig,
    WeightTokenEncoder,
    embed_model,
    embedder_config,
    load_embedder,
    network_order,
    read_model_parameters,
    train_embedder,
    write_model_parameters,
)
from ml_core.weights.token_encoder import (
    WindowSampler,
    _shuffle_rows,
    model_token_count,
    nt_xent,
    sample_model_tokens,
    token_corpus,
)
from ml_core.weights.weight_tokens import N_POSITION_FEATURES, all_tokens

SMALL = TokenEncoderConfig(token_size=16, window=8, d_model=16, n_layers=1, n_heads=2, ff_dim=32, code_dim=8, latent_dim=4)


def _training(**changes) -> TokenEncoderTrainingConfig:
    base = TokenEncoderTrainingConfig(model=SMALL, trainer=TrainerConfig(epochs=3, lr=3e-3, scheduler="none",
                                                                        early_stopping_patience=None),
                                      batch_size=4, steps_per_epoch=6, val_steps=2, max_tokens_per_model=512)
    return TokenEncoderTrainingConfig(**{**base.__dict__, **changes})


def _models(tmp_path, n=6):
    out = {}
    for i in range(n):
        g = torch.Generator().manual_seed(i)
        width = 8 + 4 * (i % 2)  # two "architectures"
        sd = {"stem.weight": torch.randn(width, 3, 3, 3, generator=g) * (1 + i),
              "blocks.0.weight": torch.randn(width, width, generator=g), "blocks.0.bias": torch.randn(width, generator=g),
              "head.weight": torch.randn(5, width, generator=g)}
        write_model_parameters(StateDictReader(tmp_path / f"m{i}.pt", sd), tmp_path / f"m{i}", chunk_size=64)
        out[f"m{i}"] = read_model_parameters(tmp_path / f"m{i}")
    return out


def test_forward_shapes_and_padding_does_not_change_the_code():
    model = WeightTokenEncoder(SMALL).eval()
    values = torch.randn(3, 8, 16)
    positions = torch.rand(3, 8, N_POSITION_FEATURES)
    present = torch.ones(3, 8, dtype=torch.bool)
    present[:, 6:] = False
    code, recon = model(values, positions, present)
    assert code.shape == (3, 8) and recon.shape == (3, 8, 16)
    garbage = values.clone()
    garbage[:, 6:] = 1e3  # padded tokens: whatever they hold, the code is the same
    torch.testing.assert_close(model.encode(garbage, positions, present), code)


def test_the_row_shuffle_view_is_invisible_to_the_encoder():
    """Shuffling a window's tokens with their positions (``permutation="rows"``) leaves the window's code
    unchanged: the encoder reads a set of (values, positions) pairs. Only ``neurons`` changes what it reads."""
    model = WeightTokenEncoder(SMALL).eval()
    values, positions = torch.randn(2, 8, 16), torch.rand(2, 8, N_POSITION_FEATURES)
    present = torch.ones(2, 8, dtype=torch.bool)
    order = torch.from_numpy(_shuffle_rows(np.zeros((8, 1)), np.random.default_rng(0)))  # one tensor: any order
    assert not torch.equal(order, torch.arange(8))
    torch.testing.assert_close(model.encode(values[:, order], positions[:, order], present), model.encode(values, positions, present))


def test_nt_xent_prefers_matching_pairs():
    a = torch.eye(4)
    assert nt_xent(a, a, 0.1) < nt_xent(a, a.roll(1, 0), 0.1)


def test_views_come_from_one_model_and_hold_its_real_values(tmp_path):
    models = _models(tmp_path, n=3)
    config = _training(batch_size=3)
    corpus = token_corpus(models, sorted(models), config, np.random.default_rng(0))
    # tag each model's tokens by a constant depth-free position column: views must share the tag
    for i, tokens in enumerate(corpus):
        tokens.positions[:, -2] = i  # the log-fan-out column, used here as a marker
    batch = WindowSampler(corpus, config, 1, seed=0).batch(np.random.default_rng(1))
    tags0 = batch["positions0"][..., -2].max(1).values
    tags1 = batch["positions1"][..., -2].max(1).values
    assert torch.equal(tags0, tags1) and len(set(tags0.tolist())) == 3
    assert not (batch["value_mask0"] & ~batch["present0"][..., None]).any()  # dropped tokens score nothing


def test_token_budget_bounds_the_sample(tmp_path):
    params = _models(tmp_path, n=1)["m0"]
    n = model_token_count(params, 16)
    assert n == 30
    sample = sample_model_tokens(params, 20, 16, np.random.default_rng(0))
    assert len(sample) == 16  # 16 runs of one token (20 rounded down to a multiple of the runs)
    depths = sample.positions[:, 0]
    assert (np.diff(depths) >= 0).all()  # network order kept
    assert len(sample_model_tokens(params, 10_000, 16, np.random.default_rng(0))) == n


def _low_rank_models(tmp_path, n=6, rank=2):
    """Models whose every weight row mixes the same ``rank`` patterns: structure shared across models
    (``rank=16``: full-rank random rows, nothing shared)."""
    basis = torch.eye(16) if rank >= 16 else torch.randn(rank, 16, generator=torch.Generator().manual_seed(99))
    out = {}
    for i in range(n):
        g = torch.Generator().manual_seed(i)
        sd = {f"blocks.{k}.weight": torch.randn(32, rank, generator=g) @ basis for k in range(4)}
        write_model_parameters(StateDictReader(tmp_path / f"r{i}.pt", sd), tmp_path / f"r{i}", chunk_size=64)
        out[f"r{i}"] = read_model_parameters(tmp_path / f"r{i}")
    return out


def test_reconstruction_carries_shared_structure_to_models_it_never_saw(tmp_path):
    models = _low_rank_models(tmp_path)
    config = _training(val_fraction=0.34, steps_per_epoch=20, mask_fraction=0.0, contrastive_weight=0.0)
    artifact, _ = train_embedder(models, WeightEmbedderConfig(tokens=config))
    assert artifact.info["eval_split"] == "val" and len(artifact.info["val_models"]) == 2
    assert artifact.info["relative_mse"] < 0.5  # rank-2 rows through a 4-number bottleneck
    (tmp_path / "noise").mkdir()
    noise = _low_rank_models(tmp_path / "noise", rank=16)  # random rows: at best 1 - 4/16 of the variance stays
    assert train_embedder(noise, WeightEmbedderConfig(tokens=config))[0].info["relative_mse"] > 0.7


def test_training_lowers_the_loss_and_scores_held_out_models(tmp_path):
    models = _models(tmp_path)
    artifact, history = train_embedder(models, WeightEmbedderConfig(tokens=_training(val_fraction=0.34)), tmp_path / "t")
    assert isinstance(artifact, TokenEncoderArtifact)
    losses = [r["train_loss"] for r in history.epochs]
    assert losses[-1] < losses[0]
    val = artifact.info["val_models"]
    assert len(val) == 2 and not set(val) & set(artifact.info["train_models"])
    assert artifact.info["eval_split"] == "val" and 0 < artifact.info["relative_mse"] < 2
    artifact.save(tmp_path / "enc")
    loaded = load_embedder(tmp_path / "enc")
    assert embedder_config(loaded) == embedder_config(artifact)
    tokens = all_tokens(models["m0"], 16)
    np.testing.assert_array_equal(artifact.encode_tokens(tokens)[0], loaded.encode_tokens(tokens)[0])


def test_embedding_streams_blocks_without_changing_the_result(tmp_path):
    models = _models(tmp_path, n=2)
    artifact, _ = train_embedder(models, WeightEmbedderConfig(tokens=_training(val_fraction=0.0)))
    params = models["m1"]
    whole = embed_model(params, artifact, batch_rows=10_000, n_segments=3, token_segments=2)
    blocked = embed_model(params, artifact, batch_rows=1, n_segments=3, token_segments=2)  # one window per block
    np.testing.assert_allclose(blocked.codes, whole.codes, rtol=1e-5, atol=1e-6)
    n_windows = -(-model_token_count(params, 16) // SMALL.window)
    assert whole.codes.shape == (n_windows, SMALL.code_dim)
    assert whole.token.shape == ((1 + 2) * SMALL.code_dim + N_POSITION_FEATURES,)
    assert whole.segment_tokens.shape == (3, SMALL.code_dim)
    np.testing.assert_allclose(whole.token[: SMALL.code_dim], np.average(whole.codes, axis=0, weights=whole.weights),
                               rtol=1e-5, atol=1e-6)
    # the layout summary: the mean position features of every token, the same streamed or not
    np.testing.assert_allclose(whole.token[-N_POSITION_FEATURES:], all_tokens(params, 16).positions.mean(0), rtol=1e-5)
    np.testing.assert_allclose(blocked.token, whole.token, rtol=1e-5, atol=1e-6)
    assert embed_model(params, artifact, token_segments=0, structure=False).token.shape == (SMALL.code_dim,)
    assert EmbeddingConfig().token_segments == 4


def test_a_real_timm_network_and_a_small_one_share_one_embedding_space(tmp_path):
    """STAND-IN: timm's mobilenetv3_small_050 with random weights (1.6 M parameters), beside a tiny net."""
    import timm

    net = timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=10)
    write_model_parameters(StateDictReader(tmp_path / "timm.pt", net.state_dict()), tmp_path / "timm")
    big = read_model_parameters(tmp_path / "timm")
    models = _models(tmp_path, n=3)
    config = _training(val_fraction=0.0, max_tokens_per_model=256, max_total_tokens=600)
    corpus = token_corpus({**models, "timm": big}, [*sorted(models), "timm"], config, np.random.default_rng(0))
    assert [len(c) for c in corpus][-1] == 144  # 600 // 4 models = 150, rounded down to 16 runs of 9
    artifact, _ = train_embedder({**models, "timm": big}, WeightEmbedderConfig(tokens=config))
    small, large = embed_model(models["m0"], artifact), embed_model(big, artifact, batch_rows=64)
    assert small.token.shape == large.token.shape == ((1 + 4) * SMALL.code_dim + N_POSITION_FEATURES,)
    assert np.isfinite(large.codes).all() and len(large.codes) > 100 * len(small.codes)
    assert next(iter(network_order(big.index.entries))).name == "conv_stem.weight"
