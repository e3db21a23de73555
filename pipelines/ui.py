"""``make ui``: ``dagster dev`` (webserver + daemon) that stops on Ctrl-C and on SIGTERM, with or without a terminal.

Why ``dagster dev`` alone did not stop: a shell without job control starts a background command with
SIGINT ignored, and Python leaves an ignored SIGINT ignored; ``dagster dev`` then maps SIGTERM to
SIGINT's disposition (``dagster._utils.interrupts.setup_interrupt_handlers``), so both were ignored and
only SIGKILL stopped it (leaving the webserver and daemon behind). This launcher restores both signals'
default dispositions and then becomes ``dagster dev`` (``exec``: same PID, no extra process), which
turns SIGINT and SIGTERM into its own clean shutdown of the webserver and the daemon.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def dagster_dev_argv(args: list[str]) -> list[str]:
    """The ``dagster dev`` command line of this environment (the ``dagster`` beside this Python)."""
    return [str(Path(sys.executable).parent / "dagster"), "dev", *args]


def main(args: list[str] | None = None) -> None:
    argv = dagster_dev_argv(list(sys.argv[1:] if args is None else args))
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)  # an exec keeps SIG_IGN: reset it so Python installs its handler
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
