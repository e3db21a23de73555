"""Command line: ``modelrec demo | run | register | ui | recommend | table`` (also ``python -m pipelines.cli``).

``demo`` builds a built-in world (cached; ``--scale reduced`` or ``standin`` for the small ones,
``wide`` for 26 dataset families), materializes every asset of every partition on the persistent
Dagster instance (``DAGSTER_HOME``, default ``.work/dagster_home``) and prints, for each held-out
dataset, the recommended models next to the measured best. ``recommend PATH`` ranks the zoo for a folder of images from what the graph
materialized (:mod:`pipelines.folder_recommendation`).
"""

import json
import logging
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import click
import pandas as pd
import yaml
from dagster import DagsterInstance

from assets.shared.artifacts import Artifact, current_artifact
from assets.shared.partitions import DATASETS, MODELS
from ml_core.evaluation import summary_markdown
from ml_core.ground_truth import TransferError, load_performance_table, table_spread
from pipelines.definitions import default_resources, world_resources
from pipelines.folder_recommendation import FolderRecommendation, apply_budget, budget_report, recommend_folder
from pipelines.readers import materialized, world_seed
from pipelines.registration import register_partitions
from pipelines.runner import MaterializationRecord, PartitionFailure, PartitionsFailed, materialize_all
from pipelines.ui import announce
from resources.artifact_store import ArtifactStore
from resources.settings import work_dir, world_dir
from worlds import SCALES, build_world

logger = logging.getLogger("modelrec")
ROOT = Path(__file__).resolve().parents[1]


def _instance() -> DagsterInstance:
    if not os.environ.get("DAGSTER_HOME"):
        home = (work_dir() / "dagster_home").resolve()
        os.environ["DAGSTER_HOME"] = str(home)
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():  # sqlite storage in DAGSTER_HOME, a run-concurrency limit
        config.write_text((ROOT / "deploy" / "dagster.yaml").read_text())
    return DagsterInstance.get()


def _summary(records: list[MaterializationRecord]) -> str:
    """Per asset: partitions built, cache hits inside a run, fresh ones that needed no run, seconds."""
    built = Counter(r.asset for r in records if not r.cache_hit)
    cached = Counter(r.asset for r in records if r.cache_hit and r.launched)
    fresh = Counter(r.asset for r in records if not r.launched)
    seconds = Counter()
    for r in records:
        seconds[r.asset] += r.seconds
    lines = [f"{'asset':24s} {'built':>6s} {'cached':>7s} {'fresh':>6s} {'seconds':>8s}"]
    for asset in dict.fromkeys(r.asset for r in records):
        lines.append(f"{asset:24s} {built[asset]:6d} {cached[asset]:7d} {fresh[asset]:6d} {seconds[asset]:8.1f}")
    launched = sum(r.launched for r in records)
    if records and not launched:
        lines.append("nothing to do: every partition is fresh (same code, config and inputs); no run launched")
    else:
        lines.append(f"{launched} run(s) launched; fresh = unchanged since its last materialization, no run")
    return "\n".join(lines)


def _materialize(instance: DagsterInstance, resources: dict, log_level: str, run_config: dict | None = None
                 ) -> tuple[list[MaterializationRecord], list[PartitionFailure]]:
    """Every stage; a failed partition does not stop the others (see :func:`materialize_all`)."""
    try:
        return materialize_all(instance, resources=resources, log_level=log_level, run_config=run_config), []
    except PartitionsFailed as failed:
        return failed.records, failed.failures


def _exit_on_failures(failures: list[PartitionFailure]) -> None:
    """List each failed partition in one line (the file or setting at fault is in its reason), exit 1."""
    if not failures:
        return
    click.echo(f"\n{len(failures)} partition(s) failed; every other partition was materialized:", err=True)
    for failure in failures:
        click.echo(f"  {failure}", err=True)
    sys.exit(1)


def _materialized(store: ArtifactStore, asset: str, partition: str | None) -> Artifact:
    try:
        return materialized(store, asset, partition)
    except FileNotFoundError as error:
        raise click.ClickException(str(error)) from error


def print_recommendations(store: ArtifactStore, dataset_keys: list[str], top: int = 3) -> None:
    """For each dataset: top recommended models, the measured best, weighted tau and regret."""
    for key in dataset_keys:
        artifact = _materialized(store, "model_recommendations", key)
        table = artifact.load()
        summary = artifact.summary()
        click.echo(f"\n== {key} ({summary.get('split', '?')}) ==")
        shown = table.head(top)
        for row in shown.itertuples():
            acc = f"  measured accuracy {row.accuracy:.3f}" if "accuracy" in table and row.accuracy == row.accuracy else ""
            click.echo(f"  #{row.rank + 1} {row.model:32s} score {row.score:+.3f}{acc}")
        if "shortlist" in table:
            short = table.loc[table["shortlist"], "model"].tolist()
            click.echo(f"  two-stage shortlist ({len(short)} of {len(table)} for LogME): {', '.join(short)}")
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
    # Dagster's own console log (each run's events, a failed step's traceback) only with -v: without it a
    # failure is one line of the summary, and the UI's run page keeps every event
    ctx.obj = {"log_level": "DEBUG" if verbose else "CRITICAL"}


def _prune_partitions(instance: DagsterInstance, resources: dict) -> None:
    """Drop registered partitions whose checkpoint or dataset folder is gone (a removed upload, or another
    world after ``demo --scale standin``), as the folder sensors do: the instance then mirrors the zoo and
    the catalog. Their materializations and artifacts stay; the key comes back if the file does."""
    current = {MODELS: ("zoo", {e.key for e in resources["zoo"].entries()}),
               DATASETS: ("catalog", {e.key for e in resources["catalog"].entries()})}
    for dimension, (where, keys) in current.items():
        stale = sorted(set(instance.get_dynamic_partitions(dimension)) - keys)
        for key in stale:
            instance.delete_dynamic_partition(dimension, key)
        if stale:
            click.echo(f"unregistered {len(stale)} {dimension} partition(s) no longer in the {where}: {', '.join(stale[:10])}")


def _split_of(store: ArtifactStore, key: str) -> str:
    return _materialized(store, "model_recommendations", key).summary().get("split", "?")


def print_table_report(store: ArtifactStore) -> None:
    """Where the ground truth came from, its spread across models, and the degenerate datasets."""
    artifact = _materialized(store, "ground_truth_ranks", None)
    summary = artifact.summary()
    ranks = artifact.load()
    accuracy = {d: dict(zip(g["model"], g["accuracy"], strict=True)) for d, g in ranks.groupby("dataset")}
    click.echo(f"\nperformance table: {summary.get('source', 'user table')}, {summary.get('n_datasets')} datasets "
               f"x {summary.get('n_models')} models")
    try:
        spread = table_spread(accuracy)
    except TransferError as err:
        click.echo(f"  spread: {err}")
    else:
        click.echo(
            f"  {spread.n_distinct_best} distinct best models over {spread.n_datasets} datasets; always picking the "
            f"overall best ({spread.overall_best}) costs {100 * spread.regret_of_overall_best_mean:.1f} points on "
            f"average, {100 * spread.regret_of_overall_best_max:.1f} at worst"
        )
    degenerate = summary.get("degenerate_datasets", {})
    click.echo(f"  degenerate datasets (left out of training and evaluation): {len(degenerate) or 'none'}")
    for name, why in degenerate.items():
        click.echo(f"    - {name}: {why}")


def print_embedding_report(store: ArtifactStore) -> None:
    """The weight embedder's held-out reconstruction and the probe table, if they were materialized."""
    embedder = current_artifact(store, "autoencoder", None)
    probes = current_artifact(store, "embedding_probes", None)
    if embedder is not None:
        s = embedder.summary()
        click.echo(f"\nweight embedder ({s.get('method', 'chunk_autoencoder')}): relative reconstruction MSE "
                   f"{s['relative_mse']:.3f} on {len(s['val_models'])} models it never trained on (< 1: better than their mean)")
    if probes is not None and "skipped" in probes.summary():
        click.echo(f"embedding probes skipped: {probes.summary()['skipped']}")
    elif probes is not None:
        s = probes.summary()
        verdict = "PASS" if s["passed"] else "FAIL"
        click.echo(f"embedding probes on held-out models (embedding_probes): {verdict}; beats the trivial descriptors "
                   f"on {', '.join(s['beaten']) or 'nothing'}; tied at the ceiling on {', '.join(s['ceiling_ties']) or 'nothing'}")
        click.echo(s["table"])


def print_evaluation(store: ArtifactStore) -> None:
    """The held-out evaluation's test table (means over folds), if it was materialized."""
    artifact = current_artifact(store, "ranker_evaluation", None)
    if artifact is None:
        return
    saved = artifact.load()
    if "skipped" in saved:
        click.echo(f"\nheld-out evaluation skipped: {saved['skipped']}")
        return
    summary = pd.DataFrame(saved["summary"])
    budgets = sorted((m for m in summary["method"] if m.startswith("budget@")), key=lambda m: int(m[7:]))
    methods = ["random", "prior", "prior_size", "prior_source_accuracy", "best_prior", "nearest",
               "nearest_source_profile", "source_similarity", "weight_neighbours", "source+weights", "h_score",
               "logme", "probe", "probe+prior", "probe+logme+prior", "best_all_pass", "ranker", "two_stage",
               "two_stage_coverage", *budgets, "oracle_nearest"]
    click.echo(f"\nheld-out evaluation (ranker_evaluation; reported ranker variant chosen on validation: "
               f"{saved['selected_variant']}; two_stage = {saved.get('selected_shortlist') or 'its top k'}; "
               f"best_prior = {saved.get('selected_priors', {})}; "
               f"best_all_pass = {saved.get('selected_all_pass') or '-'}; budget@k = k forward passes, "
               f"{saved.get('selected_budget', '')}); weighted tau truth-ordered, means ± std over folds; "
               "oracle_nearest reads the test truth (a ceiling, not a method):")
    click.echo(summary_markdown(summary, methods))


@main.command()
@click.option("--seed", default=0, show_default=True, help="seed of the generated world")
@click.option("--scale", type=click.Choice(sorted(SCALES)), default="full", show_default=True,
              help="world: the benchmark (full), the same zoo with 26 dataset families (wide, about twice "
                   "as long), the reduced one the tests use, or the pipeline tests' STAND-IN")
@click.option("--fixture", is_flag=True, help="the same as --scale standin (its former name)")
@click.option("--top", default=3, show_default=True, help="recommended models shown per dataset")
@click.pass_context
def demo(ctx: click.Context, seed: int, scale: str, fixture: bool, top: int) -> None:
    """Build a built-in world (cached) and run the whole graph on it."""
    start = time.perf_counter()
    scale = "standin" if fixture else scale
    world = build_world(world_dir(scale), scale=scale, seed=seed)
    spec = world.encoder_spec
    if world.scale.standin:
        click.echo(f"world: {world.root} (STAND-IN: generated models and images, a probe-measured table, "
                   f"random tiny CLIP-like encoder)")
    else:
        click.echo(
            f"world: {world.root} ({scale} scale): {len(world.model_names)} pre-trained models, "
            f"{len(world.dataset_names)} target datasets; dataset tokens from {spec.architecture} "
            f"(ImageNet weights, {spec.image_size} px; not CLIP); performance table measured by fine-tuning"
        )
    world_seconds = time.perf_counter() - start
    click.echo(f"world ready in {world_seconds:.1f} s")
    store = ArtifactStore()
    resources = world_resources(world, store)
    instance = _instance()
    _prune_partitions(instance, resources)
    graph_start = time.perf_counter()
    records, failures = _materialize(instance, resources, ctx.obj["log_level"])
    graph_seconds = time.perf_counter() - graph_start
    click.echo(_summary(records))
    _exit_on_failures(failures)
    click.echo(f"graph: {graph_seconds:.1f} s wall ({sum(r.seconds for r in records):.1f} s inside the assets of "
               f"{sum(r.launched for r in records)} runs; the rest is planning and Dagster's start-up of each run)")
    print_table_report(store)
    print_embedding_report(store)
    keys = sorted({r.partition for r in records if r.asset == "model_recommendations"})
    splits = {key: _split_of(store, key) for key in keys}
    held_out = [k for k in keys if splits[k] == "test"] + [k for k in keys if splits[k] == "val"]
    click.echo("\nheld-out datasets (never seen by the ranker's training): test, then validation")
    print_recommendations(store, held_out, top=top)
    for label, wanted in (("training datasets", "train"), ("datasets without ground truth", "unlabelled")):
        names = [k for k in keys if splits[k] == wanted]
        if names:
            click.echo(f"\n{label}: {', '.join(names)}")
    print_evaluation(store)
    click.echo(f"\ndone in {time.perf_counter() - start:.1f} s (world {world_seconds:.1f} s, graph {graph_seconds:.1f} s); "
               f"DAGSTER_HOME={os.environ['DAGSTER_HOME']}")


def _read_run_config(path: Path | None) -> dict | None:
    """A Dagster run config (``ops: {asset: {config: ...}}``) from a YAML or JSON file."""
    if path is None:
        return None
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise click.ClickException(f"{path}: not a readable run config: {str(error).splitlines()[0]}") from error
    if not isinstance(config, dict) or not isinstance(config.get("ops", {}), dict):
        raise click.ClickException(f"{path}: a run config is a mapping with an 'ops' mapping (ops: {{asset: {{config: ...}}}})")
    return config


@main.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="a Dagster run config (YAML or JSON: ops: {asset: {config: ...}}), as in the launchpad")
@click.pass_context
def run(ctx: click.Context, config_path: Path | None) -> None:
    """Materialize every asset of every partition with the environment's settings.

    Partitions that are fresh (nothing they read changed) get no run; a failed partition does not stop
    the others: each failure is listed in one line at the end, and the exit code is 1. A model or dataset
    whose file is gone is unregistered first (its artifacts stay), so a removed bad upload stops failing."""
    run_config = _read_run_config(config_path)
    instance = _instance()
    resources = default_resources()
    _prune_partitions(instance, resources)
    records, failures = _materialize(instance, resources, ctx.obj["log_level"], run_config)
    click.echo(_summary(records))
    print_recommendations(resources["store"], sorted({r.partition for r in records if r.asset == "model_recommendations"}))
    _exit_on_failures(failures)


@main.command()
def register() -> None:
    """Register the zoo's models and the datasets as partitions on the instance."""
    resources = default_resources()
    result = register_partitions(_instance(), resources["zoo"], resources["catalog"])
    click.echo(f"models: {len(result.models)} ({len(result.added_models)} new); datasets: {len(result.datasets)} ({len(result.added_datasets)} new)")


def ui_command(host: str, port: int) -> list[str]:
    """``dagster dev`` on this project's workspace (webserver and daemon), as ``make ui`` runs it."""
    dagster = Path(sys.executable).parent / "dagster"
    executable = str(dagster) if dagster.exists() else shutil.which("dagster")
    if executable is None:
        raise click.ClickException(f"no `dagster` command beside {sys.executable} or on PATH: install the project")
    return [executable, "dev", "-w", str(ROOT / "workspace.yaml"), "-h", host, "-p", str(port)]


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address the UI binds to")
@click.option("--port", default=3000, show_default=True, help="port of the UI")
def ui(host: str, port: int) -> None:
    """The Dagster UI and daemon (sensors, schedule) on the persistent instance, as ``make ui``."""
    _instance()  # DAGSTER_HOME and its dagster.yaml
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    command = ui_command(host, port)
    click.echo(f"DAGSTER_HOME={os.environ['DAGSTER_HOME']}")
    announce(f"http://{host}:{port}")  # the UI's address and its lineage graph with every group open
    os.execv(command[0], command)  # the UI takes this process over: Ctrl-C and SIGTERM reach it directly


def _recommend_resources(scale: str | None) -> dict:
    """The environment's settings, or those of a built-in world ``make demo --scale`` built."""
    if scale is None:
        return default_resources()
    root = world_dir(scale)
    seed = world_seed(root)
    if seed is None:
        raise click.ClickException(f"{root}: no {scale} world here: run `modelrec demo --scale {scale}` first")
    return world_resources(build_world(root, scale=scale, seed=seed), ArtifactStore())


#: what drove each row (``ml_core.ranking.explain``), as ``recommend`` prints it: column -> header
WHY_COLUMNS = {"prior_score": "prior", "nearest_score": "nearest", "source_similarity": "source"}
#: short headers of the printed table's columns (9 characters wide)
HEADERS = {**WHY_COLUMNS, "latency_ms_b1": "ms/image"}


def print_folder_recommendation(result: FolderRecommendation, top: int) -> None:
    """The ranked zoo, the two-stage shortlist marked with ``*``, and what drove each row."""
    table = result.table
    layout = f"{len(result.classes)} classes" if result.labelled else "no labels"
    what = f"catalog dataset {result.dataset}" if result.dataset else "a folder the graph has never seen"
    click.echo(f"{result.path}: {result.n_images} images, {layout} ({what}); encoder {result.encoder}")
    order = "ranked by LogME on the shortlist, then the ranker" if result.two_stage else "ranked by the trained ranker"
    click.echo(f"{len(table)} models {order}, in {result.seconds['total']:.1f} s "
               f"(encoding {result.seconds['encode']:.1f} s); * = two-stage shortlist "
               f"({int(table['shortlist'].sum())} model(s){'' if result.two_stage else ': --two-stage runs LogME on them'})")
    columns = [c for c in ("logme", "accuracy", "latency_ms_b1") if c in table and table[c].notna().any()]
    columns += [c for c in WHY_COLUMNS if c in table]
    if "nearest_datasets" in table and len(table) and table["nearest_datasets"].iloc[0]:
        click.echo(f"nearest training datasets (similarity): {table['nearest_datasets'].iloc[0]}; "
                   "prior = mean past result, nearest = results there, source = similarity to its pre-training images")
    score = "ranker_score" if result.two_stage else "score"  # the ranker's score; the order may be LogME's
    click.echo(f"{'rank':>4s}   {'model':32s} {'ranker':>8s}" + "".join(f" {HEADERS.get(c, c):>9s}" for c in columns))
    shown = table.head(top) if top > 0 else table
    for row in shown.itertuples():
        mark = "*" if row.shortlist else " "
        extra = "".join(f" {getattr(row, c):9.4f}" if getattr(row, c) == getattr(row, c) else f" {'-':>9s}"
                        for c in columns)
        click.echo(f"{row.rank + 1:4d} {mark} {row.model:32s} {getattr(row, score):+8.3f}{extra}")
    if len(shown) < len(table):
        click.echo(f"showing {len(shown)} of {len(table)} models (--top 0 shows all)")
    for model, problem in result.problems.items():
        click.echo(f"  {model}: not scored by LogME ({problem})", err=True)


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--top", default=10, show_default=True, help="models shown (0: all)")
@click.option("--two-stage", is_flag=True, help="with labels: LogME on the shortlist (a forward pass each), re-ranked")
@click.option("--json", "as_json", is_flag=True, help="the whole result as JSON on stdout (for scripts)")
@click.option("--scale", type=click.Choice(sorted(SCALES)), default=None,
              help="use the built-in world `modelrec demo --scale` built (default: the environment's settings)")
@click.option("--max-params", type=float, default=None, help="only models with at most this many parameters")
@click.option("--max-latency-ms", type=float, default=None,
              help="only models within this CPU latency per image at batch 1 (ms, as model_costs measured it)")
def recommend(path: Path, top: int, two_stage: bool, as_json: bool, scale: str | None, max_params: float | None,
              max_latency_ms: float | None) -> None:
    """Rank the zoo for the images under PATH: an ImageFolder dataset (<split>/<class>/<image>), class
    folders (<class>/<image>), or a flat folder of images (no labels).

    Reads the trained ranker and the model embeddings the graph materialized (run `modelrec demo` or
    `modelrec run` first); nothing is written to the artifact store. With --max-params / --max-latency-ms,
    only the models within that budget are listed (ranks stay those of the whole zoo); a model whose cost
    is unknown is left out, and the output says so."""
    result = recommend_folder(path, _recommend_resources(scale), two_stage=two_stage)
    budget = apply_budget(result, max_params=max_params, max_latency_ms=max_latency_ms)
    if as_json:
        click.echo(json.dumps(result.to_dict(top if top > 0 else None), indent=2))
    else:
        print_folder_recommendation(result, top)
        for line in budget_report(budget) if budget else []:
            click.echo(line)


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
def table(path: Path) -> None:
    """Check a performance table (JSON or CSV) as the graph would read it: what was read, or the problem."""
    loaded = load_performance_table(path)
    frame = loaded.frame
    click.echo(f"{path}: {frame['dataset'].nunique()} datasets x {frame['model'].nunique()} models, "
               f"{len(frame)} (dataset, model) results")
    for note in loaded.report.notes:
        click.echo(f"  {note}")


def cli(args: list[str] | None = None) -> None:
    """The command line's entry point: any error ends in one line naming what failed (the traceback
    with ``-v``) and exit code 1; usage errors exit 2, as click's do."""
    args = sys.argv[1:] if args is None else list(args)
    try:
        code = main.main(args=args, prog_name="modelrec", standalone_mode=False)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except Exception as error:  # noqa: BLE001 - the one place that turns any error into one line
        if "-v" in args or "--verbose" in args:
            raise
        first = str(error).strip().splitlines()
        click.echo(f"error: {type(error).__name__}: {first[0] if first else ''} (-v for the traceback)", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    cli()
