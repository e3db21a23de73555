"""Where the published reference tables are: ``$MODELREC_REFERENCE_DIR``, else ``tests/data/reference``.

``tests/data/reference`` is a copy of ``../shared/reference`` (Model Spider and PARC tables), kept in
the repository so that the published-figure tests always run, in CI too.
"""

import os
from pathlib import Path

REFERENCE_DIR = Path(__file__).resolve().parent / "data" / "reference"


def reference_dir() -> Path:
    env = os.environ.get("MODELREC_REFERENCE_DIR")
    return Path(env) if env else REFERENCE_DIR
