"""How long one tick of the new-model sensor takes over a zoo of N checkpoint files.

Prints the tick time of: the first tick (every file new), a steady tick (nothing changed) and
a tick with one new file, each as a ratio against a baseline measured in the same run: a bare
``os.scandir`` + ``stat`` of the same folder (the least any folder watcher must do).

    .venv/bin/python -m benchmarks.sensor_tick --files 1000
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from dagster import build_sensor_context, instance_for_test
from safetensors.torch import save_file

from pipelines.sensors import model_zoo_sensor
from resources.artifact_store import ArtifactStore
from resources.model_zoo import ModelZoo


def make_zoo(folder: Path, n: int) -> None:
    tensors = {"w": torch.zeros(16)}
    for i in range(n):
        save_file(tensors, folder / f"model_{i:05d}.safetensors")
        (folder / f"model_{i:05d}.json").write_text(json.dumps({"source_task": f"task{i % 7}"}))


def bare_listing(folder: Path) -> float:
    start = time.perf_counter()
    for entry in os.scandir(folder):
        entry.stat()
    return time.perf_counter() - start


def tick(instance, zoo: ModelZoo, cursor: str | None):
    start = time.perf_counter()
    resources = {"zoo": zoo, "store": ArtifactStore(root=str(Path(zoo.root).parent / "artifacts"))}
    result = model_zoo_sensor(build_sensor_context(instance=instance, cursor=cursor, resources=resources))
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, instance_for_test() as instance:
        folder = Path(tmp) / "zoo"  # the store, unused by these ticks (nothing is replaced), beside it
        folder.mkdir()
        make_zoo(folder, args.files)
        zoo = ModelZoo(root=str(folder))
        baseline = min(bare_listing(folder) for _ in range(5))
        first_s, first = tick(instance, zoo, None)
        for request in first.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        steady_s, steady = tick(instance, zoo, first.cursor)
        save_file({"w": torch.ones(16)}, folder / "model_new.safetensors")
        one_s, one = tick(instance, zoo, steady.cursor)
        print(f"zoo of {args.files} checkpoint files (+ sidecars), sqlite instance, this machine")
        print(f"baseline: bare scandir+stat of the folder   {1000 * baseline:8.1f} ms")
        rows = [
            ("first tick (all new)", first_s, len(first.run_requests)),
            ("steady tick (no change)", steady_s, len(steady.run_requests)),
            ("one new file", one_s, len(one.run_requests)),
        ]
        for name, seconds, runs in rows:
            print(f"{name:28s} {1000 * seconds:8.1f} ms  = {seconds / baseline:6.1f} x baseline  ({runs} run requests)")
        print("Dagster's default sensor evaluation timeout is 60 s.")


if __name__ == "__main__":
    main()
