"""`modelrec`: the installed command, `recommend PATH` on folders the graph has or has never seen, and
one-line errors.

The graph is materialized once, on the REDUCED demo world, by `modelrec run` in a subprocess (the way a
user runs it); its stderr must hold no Beta/Preview/Deprecation warning.
"""

import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from assets.shared.artifacts import current_artifact
from ml_core.ranking.shortlist import default_shortlist_size
from pipelines.cli import cli, ui_command
from pipelines.definitions import default_resources
from pipelines.folder_recommendation import recommend_folder
from resources.artifact_store import ArtifactStore
from tests.pipeline_helpers import FAST_RUN_CONFIG

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]  # the graph, subprocesses
REPO = Path(__file__).resolve().parents[1]
WARNINGS = ("Warning", "warnings.warn")


def _env(world, artifacts: Path, home: Path) -> dict[str, str]:
    """The reduced world as a user's settings: its zoo and datasets, no table (measured), the default encoder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELREC_")}
    return env | {"MODELREC_ARTIFACT_ROOT": str(artifacts), "MODELREC_ZOO_DIR": str(world.zoo_dir),
                  "MODELREC_DATASETS_DIR": str(world.datasets_dir), "DAGSTER_HOME": str(home),
                  "MODELREC_WORK_DIR": str(home.parent / "work"), "HF_HUB_OFFLINE": "1",
                  "PYTHONPATH": str(REPO)}


def _modelrec(args: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def graph(tmp_path_factory, reduced_world):
    root = tmp_path_factory.mktemp("cli_recommend")
    config = json.loads(json.dumps(FAST_RUN_CONFIG))
    config["ops"]["transfer_performance"] = {"config": {"protocol": {"epochs": 2, "min_steps": 10}}}
    (root / "run.yaml").write_text(yaml.safe_dump(config))
    env = _env(reduced_world, root / "artifacts", root / "dagster_home")
    done = _modelrec(["run", "--config", str(root / "run.yaml")], env)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"world": reduced_world, "root": root, "env": env, "run": done}


@pytest.fixture()
def user_env(graph, monkeypatch):
    """The same settings in this process (``cli()`` in-process is faster than a subprocess)."""
    for key in [k for k in os.environ if k.startswith("MODELREC_")]:
        monkeypatch.delenv(key)
    for key, value in graph["env"].items():
        if key.startswith("MODELREC_") or key == "DAGSTER_HOME":
            monkeypatch.setenv(key, value)
    return graph


def _images(folder: Path, classes: dict[str, tuple[int, int, int]], n: int, seed: int = 0) -> None:
    """Generated 32x32 images (a stand-in, never part of the world): per class a colour, noise, a bar."""
    rng = np.random.default_rng(seed)
    for name, colour in classes.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = np.clip(np.array(colour) + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
            pixels[rng.integers(0, 28):, rng.integers(0, 28)] = 255
            Image.fromarray(pixels).save(folder / name / f"{name}_{i}.png")


@pytest.fixture(scope="module")
def unseen(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("unseen") / "my_photos"
    _images(folder, {"reddish": (200, 60, 60), "greenish": (60, 200, 60), "bluish": (60, 60, 200)}, n=12)
    return folder


def _run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        cli(args)
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def _json(args: list[str], capsys) -> dict:
    code, out, err = _run_cli([*args, "--json"], capsys)
    assert code == 0, err
    return json.loads(out)


def test_the_installed_command_is_the_cli_entry_point():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, attribute = scripts["modelrec"].partition(":")
    entry = getattr(__import__(module, fromlist=[attribute]), attribute)
    assert entry is cli
    assert ui_command("127.0.0.1", 3999)[1:] == ["dev", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", "3999"]


def test_help_and_a_whole_run_print_no_beta_or_deprecation_warning(graph):
    done = _modelrec(["--help"], graph["env"])
    assert done.returncode == 0 and "recommend" in done.stdout
    for text in (done.stdout + done.stderr, graph["run"].stdout + graph["run"].stderr):
        assert not any(w in text for w in WARNINGS), text[:2000]


def test_recommend_on_a_folder_it_has_never_seen(graph, unseen):
    start = time.perf_counter()
    done = _modelrec(["recommend", str(unseen)], graph["env"])
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    assert not any(w in done.stdout + done.stderr for w in WARNINGS)
    models = graph["world"].model_names
    lines = [line for line in done.stdout.splitlines() if line[:4].strip().isdigit()]
    assert [int(line[:4]) for line in lines] == list(range(1, len(models) + 1))
    assert sorted(line[7:39].strip() for line in lines) == sorted(models)
    assert sum(line[5] == "*" for line in lines) == default_shortlist_size(len(models))
    assert "never seen" in done.stdout and "3 classes" in done.stdout
    assert seconds < 60, seconds  # interpreter start-up, the encoder and the ranker: seconds, no graph run


def test_json_top_and_a_flat_folder(user_env, unseen, tmp_path, capsys):
    models = user_env["world"].model_names
    labelled = _json(["recommend", str(unseen), "--top", "2"], capsys)
    assert labelled["labelled"] and labelled["n_classes"] == 3 and labelled["n_images"] == 36
    assert labelled["n_models"] == len(models) and len(labelled["models"]) == 2
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in sorted(unseen.rglob("*.png"))[::3]:
        (flat / path.name).write_bytes(path.read_bytes())
    result = _json(["recommend", str(flat), "--top", "0"], capsys)
    assert not result["labelled"] and result["n_classes"] == 1 and result["n_images"] == 12
    rows = result["models"]
    assert sorted(r["model"] for r in rows) == sorted(models)
    assert [r["rank"] for r in rows] == list(range(len(models)))
    assert all(a["score"] >= b["score"] for a, b in zip(rows, rows[1:], strict=False))
    assert all(np.isfinite(r["score"]) for r in rows)


def test_a_catalog_dataset_gets_the_same_tokens_and_ranking_as_the_assets(user_env, capsys):
    world, store = user_env["world"], ArtifactStore(root=user_env["env"]["MODELREC_ARTIFACT_ROOT"])
    for dataset in world.dataset_names[:2]:
        folder = recommend_folder(world.datasets_dir / dataset, default_resources())
        tokens = current_artifact(store, "dataset_tokens", dataset).load()
        # the same encoder, images and rows; float16 features equal up to an ulp (threads order the sums differently)
        np.testing.assert_allclose(folder.tokens.features, tokens.features, rtol=5e-3, atol=1e-4)
        np.testing.assert_array_equal(folder.tokens.valid, tokens.valid)
        asset = current_artifact(store, "model_recommendations", dataset).load()
        result = _json(["recommend", str(world.datasets_dir / dataset), "--top", "0"], capsys)
        assert result["dataset"] == dataset
        assert [r["model"] for r in result["models"]] == asset["model"].tolist()
        np.testing.assert_allclose([r["score"] for r in result["models"]], asset["score"].to_numpy(), rtol=1e-4)
        assert [r["shortlist"] for r in result["models"]] == asset["shortlist"].tolist()


def test_two_stage_ranks_the_shortlist_by_logme_above_the_rest(user_env, unseen, capsys):
    ranker = _json(["recommend", str(unseen), "--top", "0"], capsys)["models"]
    result = _json(["recommend", str(unseen), "--top", "0", "--two-stage"], capsys)
    rows = result["models"]
    short = [r for r in rows if r["shortlist"]]
    assert result["two_stage"] and len(short) == default_shortlist_size(len(rows))
    assert rows[: len(short)] == short  # the shortlist first ...
    logme = [r["logme"] for r in short]
    assert all(v is not None for v in logme) and logme == sorted(logme, reverse=True)  # ... ordered by LogME
    assert all(r["logme"] is None for r in rows[len(short):])
    rest = [r["model"] for r in ranker if not r["shortlist"]]
    assert [r["model"] for r in rows[len(short):]] == rest  # the others keep the ranker's order


def test_two_stage_on_a_catalog_dataset_reads_the_features_the_graph_computed(user_env, capsys, monkeypatch):
    import ml_core.ground_truth.columns as columns_module
    import ml_core.ground_truth.features as features_module

    def no_pass(cell):
        raise AssertionError(f"{cell.key}: a second forward pass")

    monkeypatch.setattr(features_module, "zoo_model_runner", no_pass)
    monkeypatch.setattr(columns_module, "zoo_model_runner", no_pass)
    world, store = user_env["world"], ArtifactStore(root=user_env["env"]["MODELREC_ARTIFACT_ROOT"])
    dataset = world.dataset_names[0]
    result = _json(["recommend", str(world.datasets_dir / dataset), "--top", "0", "--two-stage"], capsys)
    scores = current_artifact(store, "transferability_scores", dataset).load()["scores"]
    short = [r for r in result["models"] if r["shortlist"]]
    assert short and not result["problems"]
    assert [r["logme"] for r in short] == [scores[r["model"]]["logme"] for r in short]  # the same features, bitwise


@pytest.mark.parametrize("case", ["missing", "empty", "no_images", "two_stage_flat"])
def test_recommend_errors_are_one_line_naming_the_folder(user_env, tmp_path, capsys, case):
    folder = tmp_path / case
    args = ["recommend", str(folder)]
    if case != "missing":
        folder.mkdir()
    if case == "no_images":
        (folder / "cats").mkdir()
        (folder / "cats" / "notes.txt").write_text("no image here")
    if case == "two_stage_flat":
        Image.new("RGB", (8, 8)).save(folder / "one.png")
        args.append("--two-stage")
    code, out, err = _run_cli(args, capsys)
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(folder) in lines[0] and "Traceback" not in err
    expected = {"missing": "no such folder", "empty": "empty folder", "no_images": "no image files",
                "two_stage_flat": "needs labels"}[case]
    assert expected in lines[0]


def test_recommend_before_any_materialization_says_what_to_run(user_env, unseen, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MODELREC_ARTIFACT_ROOT", str(tmp_path / "empty_store"))
    code, _, err = _run_cli(["recommend", str(unseen)], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "has not been materialized" in err and "modelrec demo" in err


def test_verbose_shows_the_traceback(user_env, tmp_path):
    done = _modelrec(["-v", "recommend", str(tmp_path / "missing")], user_env["env"])
    assert done.returncode == 1 and "Traceback" in done.stderr and "no such folder" in done.stderr
