"""The Dagster UI as a user meets it, in a real browser (Playwright driving Debian's chromium).

A fresh instance holds the reduced world with every asset materialized (as ``make demo`` leaves it), with
the world's STAND-IN probe table as its performance table: the reduced world's fine-tune measurements (24
test images per dataset, 2 epochs) leave 3 of its 4 datasets degenerate (within test noise), and the
held-out evaluation needs 3 labelled families;
``python -m pipelines.ui`` (what ``make ui`` runs) serves it with the daemon, sensors and schedule on.
Each test waits on selectors or conditions, never on fixed sleeps; every page it opens must show no
error toast and log no console error. Screenshots of the main pages land in ``$MODELREC_SCREENSHOTS``
(``MODELREC_SCREENSHOTS=docs/screenshots`` refreshes the README's), else in the test's temporary folder,
so a test run never rewrites tracked files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dagster import DagsterInstance
from dagster._core.instance.ref import InstanceRef

from assets import ALL_ASSETS, ALL_SOURCES
from assets.shared.artifacts import current_artifact
from pipelines.definitions import world_resources
from pipelines.runner import materialize_all
from resources.artifact_store import ArtifactStore
from tests.pipeline_helpers import FAST_RUN_CONFIG
from worlds import REDUCED, World, build_world

pytestmark = pytest.mark.slow  # dagster dev (webserver + daemon) and a browser

playwright_api = pytest.importorskip("playwright.sync_api")  # a dev dependency: always installed by make test

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("MODELREC_CHROMIUM", "/usr/bin/chromium"))
LOCATION = "pipelines.definitions:defs"
SELECTOR = f'repositorySelector: {{repositoryLocationName: "{LOCATION}", repositoryName: "__repository__"}}'
RUN_CONFIG = json.loads(json.dumps(FAST_RUN_CONFIG))
RUN_CONFIG["ops"]["transfer_performance"] = {"config": {"protocol": {"epochs": 2, "min_steps": 10}}}
# A danger toast carries an "error" icon (dagster-webserver's Toaster); the page records each one it shows.
RECORD_ERROR_TOASTS = """
window.__errorToasts = [];
new MutationObserver(() => {
  for (const t of document.querySelectorAll('[class*="Toaster_toastInner"]')) {
    if (t.querySelector('[aria-label="error"]') && !t.dataset.recorded) {
      t.dataset.recorded = '1';
      window.__errorToasts.push(t.innerText);
    }
  }
}).observe(document, {childList: true, subtree: true});
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout: float, what: str, every: float = 1.0) -> object:
    """Poll ``condition`` until it returns something true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(every)


@dataclass
class UI:
    base: str
    store: ArtifactStore
    datasets: list[str]
    process: subprocess.Popen
    log: Path

    def graphql(self, query: str) -> dict:
        request = urllib.request.Request(
            f"{self.base}/graphql", data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.load(response)
        assert "errors" not in body, body["errors"]
        return body["data"]

    def runs(self) -> list[dict]:
        data = self.graphql("{ runsOrError { ... on Runs { results { runId jobName status "
                            "assetSelection { path } tags { key value } } } } }")
        return data["runsOrError"]["results"]


@pytest.fixture(scope="module")
def labelled_world(tmp_path_factory) -> World:
    """The reduced world with its probe-measured table (a stand-in for fine-tuning): 4 labelled families."""
    return build_world(tmp_path_factory.getbasetemp() / "reduced_probe_world",
                       scale=REDUCED.model_copy(update={"table": "probe"}), seed=0)


@pytest.fixture(scope="module")
def ui(tmp_path_factory, labelled_world) -> Iterator[UI]:
    assert CHROMIUM.exists(), f"{CHROMIUM} missing: apt-get install -y chromium (.ci/run installs it)"
    reduced_world = labelled_world
    root = tmp_path_factory.mktemp("ui_browser")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    store = ArtifactStore(root=str(root / "artifacts"))
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:  # what `make demo` leaves
        materialize_all(instance, resources=world_resources(reduced_world, store), run_config=RUN_CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELREC_")} | {
        "DAGSTER_HOME": str(home),
        "MODELREC_ARTIFACT_ROOT": str(root / "artifacts"),
        "MODELREC_ZOO_DIR": str(reduced_world.zoo_dir),
        "MODELREC_DATASETS_DIR": str(reduced_world.datasets_dir),
        "MODELREC_REEMBED_CRON": "* * * * *",  # a schedule tick within the test, not at a quarter past
        "MODELREC_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "TQDM_DISABLE": "1",
    }
    port = _free_port()
    log = root / "dagster_dev.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipelines.ui", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    server = UI(f"http://127.0.0.1:{port}", store, sorted(reduced_world.dataset_names), process, log)

    def answers() -> bool:
        assert process.poll() is None, f"dagster dev exited: {log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"{server.base}/server_info", timeout=5):
                return True
        except OSError:
            return False

    try:
        wait_until(answers, 120, "/server_info")
        yield server
    finally:
        os.kill(process.pid, signal.SIGTERM)  # pipelines.ui: dagster dev stops its webserver and daemon
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        with log.open() as text:  # the daemon's and webserver's log, for a failing test's report
            tail = text.read()[-2000:]
        print(tail)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@dataclass
class Page:
    """A browser tab on the UI that records console errors and error toasts."""

    page: object
    base: str
    screenshots: Path
    console_errors: list[str] = field(default_factory=list)

    def open(self, path: str) -> object:
        self.page.goto(self.base + path)
        return self.page

    def screenshot(self, name: str) -> None:
        self.screenshots.mkdir(parents=True, exist_ok=True)
        self.page.wait_for_load_state("networkidle")  # the page's data, not its loading placeholders
        self.page.screenshot(path=str(self.screenshots / f"{name}.png"))

    def error_toasts(self) -> list[str]:
        return self.page.evaluate("window.__errorToasts || []")


@pytest.fixture
def page(browser, ui, tmp_path_factory) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 1100})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    tab.add_init_script(RECORD_ERROR_TOASTS)
    # the first visit to a fresh instance opens a "Join the Dagster community" dialog: skip it whenever it shows
    tab.add_locator_handler(tab.get_by_role("button", name="Skip"), lambda skip: skip.click())
    screenshots = os.environ.get("MODELREC_SCREENSHOTS")
    wrapper = Page(tab, ui.base, Path(screenshots) if screenshots else tmp_path_factory.getbasetemp() / "screenshots")
    tab.on("console", lambda m: wrapper.console_errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: wrapper.console_errors.append(str(e)))
    yield wrapper
    errors, toasts = wrapper.console_errors, wrapper.error_toasts()
    context.close()
    assert not errors, f"console errors: {errors[:5]}"
    assert not toasts, f"error toasts: {toasts[:5]}"


def _asset_row(tab, name: str):
    """The catalog's (virtualized) row of asset ``name``."""
    return tab.locator("[class*=VirtualizedTable_row]", has=tab.get_by_text(name, exact=True)).first


def test_catalog_lists_every_asset_with_its_status(page, ui):
    tab = page.open("/assets")
    names = [a.key.path[-1] for a in ALL_ASSETS]
    for name in names:
        # partitioned: "All" + "<n> partitions"; unpartitioned: "Materialized" + its time
        playwright_api.expect(_asset_row(tab, name)).to_contain_text(re.compile(r"Materialized|\d+ partitions"))
    for source in ALL_SOURCES:  # the user's files, observed by the runs that read them
        playwright_api.expect(_asset_row(tab, source.key.path[-1])).to_contain_text("data version =")
    page.screenshot("catalog")


def _node_shows(text: str, name: str) -> bool:
    """Whether an asset node's label ``text`` is ``name`` (a long name is shown as ``head…tail``)."""
    head, ellipsis, tail = text.partition("…")
    return text == name or bool(ellipsis) and name.startswith(head) and name.endswith(tail)


def test_the_lineage_link_opens_every_group(page, ui):
    # what `make ui` prints: the graph with every group open (the UI's default shows one box per group)
    printed = re.search(r"Lineage, every group open: (\S+)", ui.log.read_text())
    assert printed and printed.group(1).startswith(ui.base + "/asset-groups?expanded="), ui.log.read_text()[-2000:]
    nodes = "foreignObject [class*=AssetNode_assetName]"
    tab = page.open("/asset-groups")
    tab.get_by_text("Global asset lineage").first.wait_for()
    tab.locator("foreignObject").first.wait_for()  # the graph has been laid out
    assert tab.locator(nodes).count() == 0  # collapsed groups: no asset node (what the link is for)
    tab = page.open(printed.group(1)[len(ui.base):])
    names = [a.key.path[-1] for a in ALL_ASSETS + ALL_SOURCES]
    wait_until(lambda: tab.locator(nodes).count() == len(names), 60, f"{len(names)} asset nodes on the graph")
    shown = tab.locator(nodes).all_inner_texts()
    for name in names:
        assert any(_node_shows(text, name) for text in shown), (name, shown)
    page.screenshot("lineage")


def _launch_dialog(tab, asset: str):
    tab.goto(tab.url.split("/assets")[0] + f"/assets/{asset}")
    tab.get_by_role("button", name="Materialize…").click()
    # the modal itself: the partition picker inside it is a (closed) popover that also has role "dialog"
    dialog = tab.locator(".bp5-dialog[aria-modal=true]", has_text=f"Launch runs to materialize {asset}")
    dialog.wait_for()
    return dialog


def _select_partitions(tab, dialog, keys: list[str]) -> None:
    dialog.get_by_text("Select a partition or create one").click()
    menu = tab.locator("[data-radix-popper-content-wrapper], .bp5-popover-content").last
    for key in keys:
        menu.locator("span", has_text=key).first.click()
    tab.keyboard.press("Escape")  # closes the partition menu, not the dialog
    dialog.get_by_text(f"{len(keys)} partition").first.wait_for()


def test_materialize_one_partition_from_the_asset_page(page, ui):
    dataset = ui.datasets[0]
    before = {r["runId"] for r in ui.runs()}
    tab = page.open("/assets/model_recommendations")
    dialog = _launch_dialog(tab, "model_recommendations")
    _select_partitions(tab, dialog, [dataset])
    dialog.get_by_role("button", name="Launch 1 run").click()
    dialog.wait_for(state="hidden")

    def launched() -> list[dict]:
        return [r for r in ui.runs() if r["runId"] not in before
                and {"key": "dagster/partition", "value": dataset} in r["tags"]
                and ["model_recommendations"] in [a["path"] for a in r["assetSelection"] or []]]

    (run,) = wait_until(launched, 60, "the launched run")
    final = wait_until(lambda: next((r for r in launched() if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")), None),
                       180, "the run to finish")
    assert final["status"] == "SUCCESS", final
    tab = page.open(f"/runs/{run['runId']}")
    tab.get_by_text("Success").first.wait_for()
    page.screenshot("run")


def test_backfill_of_two_dataset_tokens_partitions_completes_under_the_daemon(page, ui):
    keys = ui.datasets[:2]
    tab = page.open("/assets/dataset_tokens")
    dialog = _launch_dialog(tab, "dataset_tokens")
    _select_partitions(tab, dialog, keys)
    dialog.get_by_role("button", name="Launch backfill").click()
    dialog.wait_for(state="hidden")
    query = ("{ partitionBackfillsOrError { ... on PartitionBackfills { results { id status partitionNames "
             "assetSelection { path } } } } }")

    def backfill() -> dict | None:
        results = ui.graphql(query)["partitionBackfillsOrError"]["results"]
        return next((b for b in results if ["dataset_tokens"] in [a["path"] for a in b["assetSelection"] or []]), None)

    launched = wait_until(backfill, 60, "the backfill")
    assert sorted(launched["partitionNames"]) == sorted(keys)
    done = wait_until(lambda: (b := backfill()) and b["status"] != "REQUESTED" and b, 240, "the backfill to finish")
    assert done["status"] == "COMPLETED_SUCCESS", done
    tab = page.open(f"/runs/b/{done['id']}")
    tab.get_by_text("Completed").first.wait_for()
    page.screenshot("backfill")


def test_a_datasets_recommendations_show_the_ranked_table(page, ui):
    dataset = ui.datasets[1]
    ranking = current_artifact(ui.store, "model_recommendations", dataset).load()
    tab = page.open(f"/assets/model_recommendations?view=partitions&partition={dataset}")
    row = tab.locator("tr", has=tab.get_by_text("recommendations", exact=True))
    table = row.locator("table").first
    table.wait_for()
    headers = table.locator("th").all_inner_texts()
    first = dict(zip(headers, table.locator("tbody tr").first.locator("td").all_inner_texts(), strict=True))
    assert first["model"] == ranking.iloc[0]["model"]
    assert first["rank"] == "0"
    playwright_api.expect(row).to_contain_text(f"of {len(ranking)} models")  # says how many rows it shows
    page.screenshot("recommendations")


def _image_in_metadata(tab, key: str) -> int:
    """The natural width of the image the metadata entry ``key`` shows (opened from its markdown link)."""
    row = tab.locator("tr", has=tab.get_by_text(key, exact=True)).first
    row.get_by_text("[Show Markdown]").click()
    image = tab.get_by_role("dialog").locator("img").first
    image.wait_for()
    return wait_until(lambda: image.evaluate("i => i.complete && i.naturalWidth"), 30, f"{key} to load")


def test_autoencoder_loss_plot_renders_as_an_image(page, ui):
    tab = page.open("/assets/autoencoder")
    assert _image_in_metadata(tab, "loss_plot") > 0
    page.screenshot("autoencoder_loss")


def test_evaluation_plot_renders_as_an_image(page, ui):
    summary = current_artifact(ui.store, "ranker_evaluation", None).load()
    assert summary["summary"] and "skipped" not in summary  # a real held-out evaluation (4 family folds)
    tab = page.open("/assets/ranker_evaluation")
    assert _image_in_metadata(tab, "plot") > 0
    page.screenshot("evaluation")


def test_sensors_and_schedule_run_with_successful_ticks(page, ui):
    query = (f"{{ sensorsOrError({SELECTOR}) {{ ... on Sensors {{ results {{ name sensorState {{ status "
             f"ticks(limit: 5) {{ status }} }} }} }} }}"
             f"  schedulesOrError({SELECTOR}) {{ ... on Schedules {{ results {{ name scheduleState {{ status "
             f"ticks(limit: 5) {{ status }} }} }} }} }} }}")

    def states() -> dict | None:
        data = ui.graphql(query)
        found = {s["name"]: s["sensorState"] for s in data["sensorsOrError"]["results"]}
        found |= {s["name"]: s["scheduleState"] for s in data["schedulesOrError"]["results"]}
        return found if all(s["ticks"] for s in found.values()) else None

    found = wait_until(states, 150, "a tick of every sensor and of the schedule", every=3)
    assert set(found) == {"model_zoo_sensor", "dataset_catalog_sensor", "results_sensor", "recommendations_automation",
                          "reembed_stale_models"}
    for name, state in found.items():
        assert state["status"] == "RUNNING", name
        # SKIPPED: evaluated fine and nothing to do (an up-to-date world); never FAILURE
        assert {t["status"] for t in state["ticks"]} <= {"SUCCESS", "SKIPPED"}, (name, state["ticks"])
    tab = page.open("/automation")
    for name in found:
        tab.get_by_text(name, exact=True).first.wait_for()
    page.screenshot("automation")
