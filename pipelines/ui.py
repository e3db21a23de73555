"""``make ui``: ``dagster dev`` (webserver + daemon) that stops on Ctrl-C and on SIGTERM, with or without a terminal.

Why ``dagster dev`` alone did not stop: a shell without job control starts a background command with
SIGINT ignored, and Python leaves an ignored SIGINT ignored; ``dagster dev`` then maps SIGTERM to
SIGINT's disposition (``dagster._utils.interrupts.setup_interrupt_handlers``), so both were ignored and
only SIGKILL stopped it (leaving the webserver and daemon behind). This launcher restores both signals'
default dispositions and then becomes ``dagster dev`` (``exec``: same PID, no extra process), which
turns SIGINT and SIGTERM into its own clean shutdown of the webserver and the daemon.

Before it starts, it prints the UI's address and a link to the lineage graph with every asset group open:
Dagster's UI opens the global graph with each group collapsed to one box, unless the page's ``expanded``
query names the group (:func:`lineage_path`).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import quote

#: the code location ``workspace.yaml`` loads (its name in the UI) and the repository Dagster names for it
LOCATION = "pipelines.definitions:defs"
REPOSITORY = "__repository__"


def dagster_dev_argv(args: list[str]) -> list[str]:
    """The ``dagster dev`` command line of this environment (the ``dagster`` beside this Python)."""
    return [str(Path(sys.executable).parent / "dagster"), "dev", *args]


def asset_groups() -> list[str]:
    """Every asset group of the code location (sources included), sorted."""
    from assets import ALL_ASSETS, ALL_SOURCES  # noqa: PLC0415 - only to print the link

    return sorted({group for a in ALL_ASSETS + ALL_SOURCES for group in a.group_names_by_key.values()})


def lineage_path(groups: Iterable[str]) -> str:
    """``/asset-groups?expanded=...``: the global lineage graph with every group in ``groups`` open.

    The UI's id of a group is ``global@global:<group>``, or ``<repository>@<location>:<group>`` when its
    per-location groups flag is on; both are listed (an id the page does not show is ignored).
    """
    ids = [f"{prefix}{group}" for group in groups for prefix in ("global@global:", f"{REPOSITORY}@{LOCATION}:")]
    return "/asset-groups?expanded=" + quote(",".join(ids), safe="@:,")


def ui_address(args: Sequence[str]) -> str:
    """``http://host:port`` that ``dagster dev`` with ``args`` serves (its defaults: 127.0.0.1, 3000)."""
    host, port = "127.0.0.1", "3000"
    for i, arg in enumerate(args[:-1]):
        if arg in ("-h", "--host"):
            host = args[i + 1]
        elif arg in ("-p", "--port"):
            port = args[i + 1]
    return f"http://{host}:{port}"


def announce(base: str) -> None:
    """Print where the UI is and the link to its lineage graph with every group open."""
    sys.stdout.write(f"Dagster UI on {base}; Ctrl-C stops it\n"
                     f"Lineage, every group open: {base}{lineage_path(asset_groups())}\n")
    sys.stdout.flush()  # before exec replaces this process and its buffers


def main(args: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if args is None else args)
    announce(ui_address(args))
    argv = dagster_dev_argv(args)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)  # an exec keeps SIG_IGN: reset it so Python installs its handler
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
