"""What a model costs (``ml_core.weights.costs``), the Pareto front and budgets (``ml_core.ranking.pareto``).

Real timm architectures (random weights, ``pretrained=False``: nothing downloaded) saved as safetensors,
measured by the code under test, against figures the test obtains another way:

* parameters: ``sum(p.numel())`` over the network the test builds itself, and for timm ``resnet18`` with
  1000 classes the figure published for it (11,689,512);
* FLOPs: the code counts with ``torch.utils.flop_counter.FlopCounterMode`` (torch's dispatcher); the test
  sums the textbook formula (2 x C_out x H_out x W_out x C_in / groups x k_h x k_w per convolution, 2 x
  in x out per linear layer) over the output shapes forward hooks record, and for a tiny zoo CNN writes
  the number down by hand; resnet18 at 224 px is also checked against timm's published 1.82 GMACs.
"""

import math

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from safetensors.torch import save_file

from ml_core.ranking.pareto import pareto_front, with_costs, within_budget
from ml_core.weights import SmallCNN
from ml_core.weights.costs import CostConfig, count_flops, load_network, model_costs

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAST = CostConfig(warmup=1, repeats=3)


def _save(model: torch.nn.Module, path) -> None:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def _hook_flops(model: torch.nn.Module, resolution: int) -> int:
    """FLOPs of one image by the textbook formula over every Conv2d and Linear (shapes from forward hooks)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            c_in_per_group = module.in_channels // module.groups
            k_h, k_w = module.kernel_size
            total += 2 * output.shape[1] * output.shape[2] * output.shape[3] * c_in_per_group * k_h * k_w
        else:
            total += 2 * module.in_features * module.out_features * (output.numel() // output.shape[-1])

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, resolution, resolution))
    for handle in handles:
        handle.remove()
    return total


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv3_small_050"])
def test_costs_of_real_timm_architectures_match_independent_figures(tmp_path, name):
    model = timm.create_model(name, pretrained=False, num_classes=10)
    path = tmp_path / f"{name}.safetensors"
    _save(model, path)
    costs = model_costs(path, f"timm:{name}", num_classes=10, input_size=64, config=FAST)
    assert costs.reason is None and costs.params_source == "network"
    assert costs.params == sum(p.numel() for p in model.parameters())
    assert costs.size_bytes == path.stat().st_size
    assert costs.resolution == 64
    assert costs.flops == _hook_flops(model, 64)
    for column in ("latency_ms_b1", "latency_ms_b32"):
        assert math.isfinite(getattr(costs, column)) and getattr(costs, column) > 0
    assert costs.threads == 1 and costs.machine["torch_threads"] == 1 and costs.machine["cpu"]
    columns = costs.columns()
    assert columns["gflops"] == costs.flops / 1e9 and columns["size_mb"] == costs.size_bytes / 1e6


def test_resnet18_against_its_published_figures(tmp_path):
    model = timm.create_model("resnet18", pretrained=False)  # 1000 ImageNet classes
    _save(model, tmp_path / "r18.safetensors")
    network = load_network(tmp_path / "r18.safetensors", "timm:resnet18")
    assert sum(p.numel() for p in network.parameters()) == 11_689_512  # torchvision's / timm's model card
    flops = count_flops(network, torch.zeros(1, 3, 224, 224))
    assert flops == pytest.approx(2 * 1.82e9, rel=0.01)  # timm: 1.82 GMACs at 224 px; 2 FLOPs per MAC


def test_flops_of_a_tiny_zoo_cnn_by_hand(tmp_path):
    model = SmallCNN(width=4, depth=2, num_classes=10)
    _save(model, tmp_path / "tiny.safetensors")
    costs = model_costs(tmp_path / "tiny.safetensors", "smallcnn", num_classes=10,
                        arch_kwargs={"width": 4, "depth": 2}, input_size=32, config=FAST)
    conv1 = 2 * 4 * 32 * 32 * 3 * 3 * 3  # 3 -> 4 channels, 3x3, padding 1, at 32x32
    conv2 = 2 * 8 * 16 * 16 * 4 * 3 * 3  # 4 -> 8 channels at 16x16 (after a 2x2 max-pool)
    head = 2 * 8 * 10
    assert costs.flops == conv1 + conv2 + head == 368_800
    assert costs.params == (3 * 9 * 4 + 4) + (4 * 9 * 8 + 8) + (8 * 10 + 10)
    bigger = model_costs(tmp_path / "tiny.safetensors", "smallcnn", num_classes=10, arch_kwargs={"width": 4, "depth": 2},
                         input_size=32, config=CostConfig(resolution=64, warmup=1, repeats=3))
    assert bigger.flops == 4 * (conv1 + conv2) + head  # convolutions grow with the pixels, the head does not


def test_networks_that_cannot_be_built_report_size_and_why(tmp_path):
    model = timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=10)
    path = tmp_path / "m.safetensors"
    _save(model, path)
    stored = sum(v.numel() for v in model.state_dict().values() if v.dtype.is_floating_point)
    for architecture, why in [(None, "names no architecture"), ("timm:no_such_net", "no_such_net"),
                              ("keras:mobilenet", "unknown library"), ("timm:resnet18", "does not fit")]:
        costs = model_costs(path, architecture, num_classes=10, config=FAST)
        assert why in costs.reason
        assert costs.params == stored and costs.params_source == "checkpoint tensors"
        assert costs.size_bytes == path.stat().st_size
        assert costs.flops is None and costs.latency_ms_b1 is None and costs.latency_ms_b32 is None


def test_pareto_front_on_a_hand_made_case():
    #            a     b     c     d     e     f       g     h       i
    score = [0.9, 0.8, 0.8, 0.5, 0.95, np.nan, 0.99, 0.7, 0.5]
    cost = [10.0, 5.0, 5.0, 1.0, 20.0, 0.1, np.nan, 5.0, 2.0]
    front = pareto_front(score, cost)
    # b and c tie exactly (same score, same cost): neither dominates, both on the front; h has b's cost
    # and a lower score; i has d's score at a higher cost; f and g lack a figure: never on the front,
    # and dominate nothing (f's cost 0.1 does not push d off, g's 0.99 does not push e off)
    assert front.tolist() == [True, True, True, True, True, False, False, False, False]
    assert pareto_front([1.0, 1.0], [2.0, 1.0]).tolist() == [False, True]  # same score, cheaper wins
    assert pareto_front([], []).tolist() == []
    assert not pareto_front([np.nan, 1.0], [1.0, np.nan]).any()


def test_cost_columns_front_axis_and_budget():
    table = pd.DataFrame({"rank": [0, 1, 2, 3], "model": ["big", "mid", "small", "mystery"], "score": [0.9, 0.7, 0.6, 0.8]})
    costs = {"big": {"params": 1e7, "latency_ms_b1": 9.0}, "mid": {"params": 1e6, "latency_ms_b1": 3.0},
             "small": {"params": 1e5, "latency_ms_b1": 4.0}, "mystery": {"params": 5e4, "latency_ms_b1": None}}
    out, axis = with_costs(table, costs)
    assert axis == "latency_ms_b1"
    assert set(out.columns) >= {"params", "size_mb", "gflops", "latency_ms_b1", "latency_ms_b32", "on_front"}
    assert out.set_index("model")["on_front"].to_dict() == {"big": True, "mid": True, "small": False, "mystery": False}
    by_params, axis = with_costs(table, {m: {"params": c["params"]} for m, c in costs.items()})
    assert axis == "params" and by_params["on_front"].tolist() == [True, False, False, True]  # no latency at all

    budget = within_budget(out, max_latency_ms=5.0)
    assert budget.table["model"].tolist() == ["mid", "small"] and budget.table["rank"].tolist() == [1, 2]
    assert budget.over == {"--max-latency-ms": ["big"]} and budget.unknown == {"mystery": ["latency_ms_b1"]}
    assert budget.n_filtered == 2
    both = within_budget(out, max_params=2e6, max_latency_ms=3.5)
    assert both.table["model"].tolist() == ["mid"] and both.over == {"--max-params": ["big"],
                                                                      "--max-latency-ms": ["big", "small"]}
    assert within_budget(out, max_params=1e5).table["model"].tolist() == ["small", "mystery"]  # params known
