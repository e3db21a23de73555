"""Asset ``model_costs``: what one model of the zoo costs to run (parameters, size, FLOPs, CPU latency).

Caching: the cache key holds the checkpoint's content, the card fields that build the network
(architecture, its arguments, classes, input size), the config (resolution, threads, repeats) and the
**machine** (:func:`ml_core.weights.describe_machine`: CPU model, logical CPUs, torch threads, torch
version). Latency belongs to the machine that measured it: an unchanged model on the same kind of
machine is never measured again (same data version); on another kind of machine (a worker with another
CPU) it is measured there, and the metadata names that machine.
"""

from dagster import AssetExecutionContext, asset
from upath import UPath

from assets.shared.artifacts import materialize_asset
from assets.shared.configs import dagster_config
from assets.shared.loaders import COSTS_FILE
from assets.shared.partitions import models_partitions
from ml_core.artifacts import hash_parts, write_json
from ml_core.weights import CostConfig, describe_machine, machine_label
from ml_core.weights import model_costs as measure_costs
from resources.artifact_store import ArtifactStore
from resources.model_zoo import ModelZoo

CODE_VERSION = "1"
CostsAssetConfig = dagster_config(CostConfig(), "CostsAssetConfig")
#: the card fields that decide which network is built and at what input size
CARD_FIELDS = {"architecture", "arch_kwargs", "num_classes", "input_size"}


def _rounded(value: float | None, digits: int = 4) -> float | str:
    return "unknown" if value is None else round(float(value), digits)


@asset(
    partitions_def=models_partitions,
    code_version=CODE_VERSION,
    group_name="models",
    kinds={"pytorch"},
    deps=["model_checkpoints"],  # the source asset of the checkpoint files (assets/model_checkpoints.py)
    description="What one model costs: parameters, size on disk, FLOPs per image (torch FlopCounterMode) and "
    "CPU latency per image at batch 1 and 32 (median of repeated runs, machine named); a network that "
    "cannot be built reports size only, and why.",
)
def model_costs(context: AssetExecutionContext, config: CostsAssetConfig, store: ArtifactStore, zoo: ModelZoo):
    entry = zoo.entry(context.partition_key)
    card = zoo.cards({entry.key}, warn=context.log.warning)[entry.key]
    cost_config = config.to_ml()
    machine = describe_machine(cost_config.threads)

    def build(directory: UPath) -> tuple[str, dict]:
        costs = measure_costs(entry.path, card.architecture, num_classes=card.num_classes, arch_kwargs=card.arch_kwargs,
                            input_size=card.input_size, config=cost_config)
        if costs.reason:
            context.log.warning(f"{entry.name}: size only, the network was not built: {costs.reason}")
        write_json(directory / COSTS_FILE, costs.to_dict())
        return hash_parts("model_costs", costs.to_dict()), {"model": entry.name, **costs.to_dict()}

    result = materialize_asset(
        context, store, config={**config.model_dump(), "machine": machine},
        inputs={"checkpoint": store.fingerprints.file_sha256(entry.path),
                "card": hash_parts("cost_card", card.model_dump(mode="json", include=CARD_FIELDS))},
        build=build,
    )
    s = result.summary
    flops = s.get("flops")
    yield result.output({
        "model": s["model"],
        "architecture": s.get("architecture") or "unknown",
        "params": s["params"],
        "params_source": s["params_source"],
        "size_mb": round(s["size_bytes"] / 1e6, 3),
        "resolution": s.get("resolution") or "n/a",
        "gflops": "unknown" if flops is None else round(flops / 1e9, 6),
        "flops_counted": "torch.utils.flop_counter.FlopCounterMode total per image: matmuls and convolutions, "
                         "2 FLOPs per multiply-add; elementwise work not counted",
        "latency_ms_b1": _rounded(s.get("latency_ms_b1")),
        "latency_ms_b32": _rounded(s.get("latency_ms_b32")),
        "latency_measured": f"median of {s.get('repeats')} runs after warm-up, torch.inference_mode, per image"
                            if s.get("latency_ms_b1") is not None else "not measured",
        "machine": machine_label(s["machine"]),
        "not_built_because": s.get("reason") or "built",
    })
