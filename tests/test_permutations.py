"""Neuron permutations: derived from the module graph, function-preserving on every zoo architecture,
recovered from a stored model, and the token views equal to the re-tokenized permuted weights."""

import numpy as np
import pytest
import torch
from torch import nn

from ml_core.weights import StateDictReader, build_architecture, read_model_parameters, write_model_parameters
from ml_core.weights.permutations import (
    TokenPermuter,
    model_permutation_groups,
    permutation_groups,
    permute_tensors,
    random_permutations,
)
from ml_core.weights.token_encoder import WindowSampler, sample_model_tokens, token_samples
from ml_core.weights.weight_tokens import all_tokens

# the demo world's constructor arguments (worlds/scale.py), and EfficientNet-Lite0 as the demo builds it
ZOO = {
    "smallcnn": {"width": 16, "depth": 3},
    "tinyresnet": {"width": 8, "blocks": [2, 1, 1]},  # two blocks in a stage: an identity shortcut
    "depthwisenet": {"width": 16, "depth": 4},
    "tinyvit": {"embed_dim": 48, "depth": 3, "num_heads": 3, "patch_size": 8},
    "efficientnet_lite0": {"num_classes": 10, "image_size": 64},
}


def _network(name: str) -> nn.Module:
    """A random-init network whose norm layers are random too (identity norms would hide a wrongly
    permuted BatchNorm / LayerNorm)."""
    torch.manual_seed(0)
    model = build_architecture(name, **ZOO[name]).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
                module.weight.normal_(1.0, 0.3)
                module.bias.normal_(0.0, 0.3)
                if isinstance(module, nn.BatchNorm2d):
                    module.running_mean.normal_(0.0, 0.5)
                    module.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("name", list(ZOO))
def test_a_permuted_copy_computes_the_same_function(name, one_torch_thread):
    model = _network(name)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    groups = permutation_groups(model, x[:1])
    assert groups and all(g.size >= 2 for g in groups)
    state = model.state_dict()
    permuted = permute_tensors(state, groups, random_permutations(groups, np.random.default_rng(0)))
    copy = build_architecture(name, **ZOO[name]).eval()
    copy.load_state_dict(permuted)
    with torch.no_grad():
        torch.testing.assert_close(copy(x), model(x), rtol=1e-4, atol=1e-5)
    # the weights did change: every tensor of every group, i.e. all but the head's bias (the logits' order
    # is the output) and the attention's qkv bias (its channels are split into heads: left as they are)
    changed = {k for k in state if not torch.equal(state[k], permuted[k])}
    members = {n for g in groups for n, _ in g.members}
    assert changed == members
    floats = {k for k, v in state.items() if v.is_floating_point()}
    untouched = floats - changed
    assert all(k.endswith(("head.bias", "_fc.bias", "qkv.bias")) for k in untouched), untouched


class _Branches(nn.Module):
    """A residual over the input (its channels are the image's: fixed), a concatenation and a reshape
    (neither is understood: the channels they read stay), and one free hidden layer."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 4, 1)
        self.c, self.d = nn.Conv2d(3, 5, 1), nn.Conv2d(9, 6, 1)
        self.hidden, self.out = nn.Linear(6, 7), nn.Linear(7, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.b(x + self.a(x)), self.c(x)], dim=1)
        z = self.d(y).mean((2, 3)).reshape(-1, 6)
        return self.out(torch.relu(self.hidden(z)))


def test_joins_with_fixed_channels_and_unknown_operations_block_their_channels():
    model = _Branches().eval()
    x = torch.randn(2, 3, 8, 8)
    groups = permutation_groups(model, x[:1])
    assert [sorted(g.members) for g in groups] == [[("hidden.bias", 0), ("hidden.weight", 0), ("out.weight", 1)]]
    permuted = permute_tensors(model.state_dict(), groups, [np.arange(7)[::-1].copy()])
    copy = _Branches().eval()
    copy.load_state_dict(permuted)
    torch.testing.assert_close(copy(x), model(x))


def _stored(tmp_path, name: str):
    model = _network(name)
    write_model_parameters(StateDictReader(tmp_path / f"{name}.pt", model.state_dict()), tmp_path / name)
    return model, read_model_parameters(tmp_path / name)


@pytest.mark.parametrize("name", ["tinyresnet", "tinyvit"])
def test_a_stored_model_gets_the_groups_of_its_network(tmp_path, name, one_torch_thread):
    model, params = _stored(tmp_path, name)
    expected = permutation_groups(model, torch.randn(1, 3, 32, 32))
    assert model_permutation_groups(params) == tuple(expected)


def test_an_unknown_network_gets_no_groups(tmp_path):
    state = {"stem.weight": torch.randn(8, 3, 3, 3), "blocks.0.weight": torch.randn(8, 8), "head.weight": torch.randn(5, 8)}
    write_model_parameters(StateDictReader(tmp_path / "m.pt", state), tmp_path / "m", chunk_size=64)
    assert model_permutation_groups(read_model_parameters(tmp_path / "m")) == ()


def test_token_views_are_the_tokens_of_the_permuted_network(tmp_path, one_torch_thread):
    model, params = _stored(tmp_path, "tinyresnet")
    groups = model_permutation_groups(params)
    perms = random_permutations(groups, np.random.default_rng(3))
    state = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
    permuted_state = permute_tensors(state, groups, perms)
    write_model_parameters(StateDictReader(tmp_path / "p.pt", permuted_state), tmp_path / "p")
    expected = all_tokens(read_model_parameters(tmp_path / "p"), 16)

    permuter = TokenPermuter(groups, 16)
    sample = sample_model_tokens(params, 10**6, 16, np.random.default_rng(0), permuter)  # every token
    assert len(sample) == len(expected)
    values, positions = sample.values.copy(), sample.positions.copy()
    permuter.permuted(0, len(sample), values, positions, np.random.default_rng(0), dict(enumerate(perms)))
    np.testing.assert_allclose(values, expected.values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(positions, expected.positions, rtol=1e-5, atol=1e-6)
    assert not np.allclose(values, sample.values)  # and the view differs from the model as stored

    # a window of a budgeted sample: the tokens the same sample (same places) takes from the permuted network
    permuter = TokenPermuter(groups, 16)
    budget = sample_model_tokens(params, 320, 16, np.random.default_rng(5), permuter)
    expected = sample_model_tokens(read_model_parameters(tmp_path / "p"), 320, 16, np.random.default_rng(5))
    values, positions = budget.values.copy(), budget.positions.copy()
    permuter.permuted(40, 80, values[40:80], positions[40:80], np.random.default_rng(0), dict(enumerate(perms)))
    np.testing.assert_allclose(values[40:80], expected.values[40:80], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(positions[40:80], expected.positions[40:80], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(values[:40], budget.values[:40])  # outside the window: untouched


def test_the_encoder_trains_on_neuron_permuted_views(tmp_path, one_torch_thread):
    from ml_core.weights import WeightEmbedderConfig, train_embedder
    from tests.test_token_encoder import _training

    models = {name: _stored(tmp_path, name)[1] for name in ("smallcnn", "tinyresnet", "depthwisenet")}
    config = _training(permutation="neurons", val_fraction=0.34)
    corpus, permuters = token_samples(models, sorted(models), config, np.random.default_rng(0))
    assert all(permuters)  # every zoo network is recognised
    batch = WindowSampler(corpus, config, 1, seed=0, permuters=permuters).batch(np.random.default_rng(1))
    assert torch.isfinite(batch["values0"]).all()
    artifact, history = train_embedder(models, WeightEmbedderConfig(tokens=config))
    assert np.isfinite([r["train_loss"] for r in history.epochs]).all()
    assert artifact.training.permutation == "neurons" and artifact.info["eval_split"] == "val"
