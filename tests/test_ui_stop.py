"""`make ui` stops on SIGTERM and on Ctrl-C (SIGINT) even when started without a terminal.

A shell without job control starts a background command with SIGINT ignored; ``dagster dev`` alone then
ignored SIGTERM too (it maps SIGTERM to SIGINT's disposition) and only SIGKILL stopped it. The child is
started here the same way (SIGINT ignored, no terminal), so without ``pipelines.ui`` these tests hang.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_ui_command import _free_port, wait_for_ui

pytestmark = pytest.mark.slow  # dagster dev: webserver + daemon subprocesses

REPO = Path(__file__).resolve().parents[1]


def _as_a_background_job() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what `cmd &` in a non-interactive shell does


def _process_group(pgid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "-g", str(pgid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_ui_stops_cleanly_on_a_signal_without_a_terminal(tmp_path, signum):
    port = _free_port()
    env = os.environ | {"DAGSTER_HOME": str(tmp_path), "MODELREC_AUTOMATION": "off",
                        "MODELREC_WORK_DIR": str(tmp_path / "work")}
    ui = subprocess.Popen(
        [sys.executable, "-m", "pipelines.ui", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, preexec_fn=_as_a_background_job,
    )
    try:
        wait_for_ui(port, ui)
        webserver_and_daemon = [p for p in _process_group(ui.pid) if p != ui.pid]
        assert len(webserver_and_daemon) >= 2
        os.kill(ui.pid, signum)  # to the launcher's PID only, as `kill` or systemd would
        assert ui.wait(timeout=60) is not None
        deadline = time.monotonic() + 60  # dagster dev waits for its webserver and daemon to exit
        while any(p in _process_group(ui.pid) for p in webserver_and_daemon):
            assert time.monotonic() < deadline, f"left running: {_process_group(ui.pid)}"
            time.sleep(1)
    finally:
        if ui.poll() is None or _process_group(ui.pid):
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait(timeout=10)
