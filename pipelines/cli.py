"""Command line: ``python -m pipelines.cli demo | run | register``.

``demo`` builds the built-in world (cached), materializes every asset of every partition on the
persistent Dagster instance (``DAGSTER_HOME``, default ``.work/dagster_home``) and prints, for each
dataset, the recommended models next to the measured best.
"""

import logging
import os
import time
from collections import Counter
from pathlib import Path

import click
from dagster import DagsterInstance

from assets.artifacts import ArtifactRef
from assets.model_recommendations import load_recommendations
from ml_core.fixture_world import build_fixture_world
from ml_core.storage import read_json
from pipelines.definitions import default_resources, world_resources
from pipelines.registration import register_partitions
from pipelines.runner import MaterializationRecord, materialize_all
from resources.artifact_store import ArtifactStore
from resources.settings import fixture_world_dir, work_dir

logger = logging.getLogger("modelrec")


def _instance() -> DagsterInstance:
    if not os.environ.get("DAGSTER_HOME"):
        home = (work_dir() / "dagster_home").resolve()
        os.environ["DAGSTER_HOME"] = str(home)
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():  # sqlite storage in DAGSTER_HOME, a run-concurrency limit
        config.write_text((Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml").read_text())
    return DagsterInstance.get()


def _summary(records: list[MaterializationRecord]) -> str:
    built = Counter(r.asset for r in records if not r.cache_hit)
    cached = Counter(r.asset for r in records if r.cache_hit)
    seconds = Counter()
    for r in records:
        seconds[r.asset] += r.seconds
    lines = [f"{'asset':24s} {'built':>6s} {'cached':>7s} {'seconds':>8s}"]
    for asset in dict.fromkeys(r.asset for r in records):
        lines.append(f"{asset:24s} {built[asset]:6d} {cached[asset]:7d} {seconds[asset]:8.1f}")
    return "\n".join(lines)


def print_recommendations(store: ArtifactStore, dataset_keys: list[str], top: int = 3) -> None:
    """For each dataset: top recommended models, the measured best, weighted tau and regret."""
    for key in dataset_keys:
        ref = ArtifactRef.from_dict(read_json(store.ref_path("model_recommendations", key)))
        table = load_recommendations(ref, store)
        manifest = store.lookup("model_recommendations", key, ref.cache_key) or {}
        summary = manifest.get("summary", {})
        click.echo(f"\n== {key} ({summary.get('split', '?')}) ==")
        shown = table.head(top)
        for row in shown.itertuples():
            acc = f"  measured accuracy {row.accuracy:.3f}" if "accuracy" in table and row.accuracy == row.accuracy else ""
            click.echo(f"  #{row.rank + 1} {row.model:32s} score {row.score:+.3f}{acc}")
        if "accuracy" in table and table["accuracy"].notna().any():
            best = table.loc[table["accuracy"].idxmax()]
            click.echo(f"  measured best: {best['model']} ({best['accuracy']:.3f})")
        for method in ("ranker", "prior"):
            if method in summary:
                r = summary[method]
                click.echo(
                    f"  {method:6s}: weighted tau (truth-ordered) {r['weighted_tau_truth']:+.3f}, "
                    f"top-1 regret {100 * r['top1_regret']:.1f} points"
                )


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="log every step")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = {"log_level": "DEBUG" if verbose else "WARNING"}


@main.command()
@click.option("--seed", default=0, show_default=True, help="seed of the generated world")
@click.pass_context
def demo(ctx: click.Context, seed: int) -> None:
    """Build the built-in fixture world (a labelled STAND-IN) and run the whole graph on it."""
    start = time.perf_counter()
    world = build_fixture_world(fixture_world_dir(), seed=seed)
    click.echo(f"world: {world.root} (STAND-IN: generated models and images, random tiny CLIP-like encoder)")
    store = ArtifactStore()
    resources = world_resources(world, store)
    instance = _instance()
    records = materialize_all(instance, resources=resources, log_level=ctx.obj["log_level"])
    click.echo(_summary(records))
    print_recommendations(store, sorted({r.partition for r in records if r.asset == "model_recommendations"}))
    click.echo(f"\ndone in {time.perf_counter() - start:.1f} s; DAGSTER_HOME={os.environ['DAGSTER_HOME']}")


@main.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Materialize every asset of every partition with the environment's settings."""
    instance = _instance()
    resources = default_resources()
    records = materialize_all(instance, resources=resources, log_level=ctx.obj["log_level"])
    click.echo(_summary(records))
    print_recommendations(resources["store"], sorted({r.partition for r in records if r.asset == "model_recommendations"}))


@main.command()
def register() -> None:
    """Register the zoo's models and the datasets as partitions on the instance."""
    resources = default_resources()
    result = register_partitions(_instance(), resources["zoo"], resources["catalog"])
    click.echo(f"models: {len(result.models)} ({len(result.added_models)} new); datasets: {len(result.datasets)} ({len(result.added_datasets)} new)")


if __name__ == "__main__":
    main()
