"""The layout is the architecture: imports run one way, and a test fails when one runs back up.

* ``ml_core`` imports nothing of the project's other packages, and no Dagster;
* inside ``ml_core`` the packages form layers (below), each importing only lower ones;
* ``worlds`` imports only ``ml_core``; ``resources`` only ``ml_core``; ``assets`` only ``ml_core``,
  ``resources`` and its own shared helper modules (never another asset module);
* ``benchmarks`` never imports ``assets`` (it reads a store through ``pipelines``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: ml_core's layers, bottom first; a module may import its own layer and those below.
LAYERS = (
    {"ml_core.artifacts", "ml_core.trainer", "ml_core.metrics", "ml_core.configs", "ml_core.progress"},
    {"ml_core.weights"},
    {"ml_core.images"},
    {"ml_core.ground_truth"},
    {"ml_core.ranking"},
    {"ml_core.evaluation"},
)
#: the modules of ``assets`` that every asset module may import: glue, not another asset's internals
#: (``transferability_cells``: the cache of forward-pass cells that two assets share, so none runs twice;
#: ``observations``: the helpers of the two observable source assets).
SHARED_ASSET_MODULES = {"assets.shared.artifacts", "assets.shared.loaders", "assets.shared.partitions", "assets.shared.configs",
                        "assets.shared.observations", "assets.shared.transferability_cells"}
TOP_LEVEL = ("ml_core", "worlds", "resources", "assets", "pipelines", "benchmarks", "tests")


def _imports(path: Path) -> set[str]:
    """Every project module ``path`` imports (``from x import y`` gives x; relative imports resolved)."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            found.add(module)
    return {m for m in found if m.split(".")[0] in TOP_LEVEL or m.split(".")[0] == "dagster"}


def _modules(package: str) -> list[tuple[str, Path]]:
    return sorted((".".join(p.relative_to(ROOT).with_suffix("").parts), p) for p in (ROOT / package).rglob("*.py"))


def _layer(module: str) -> int | None:
    for depth, layer in enumerate(LAYERS):
        if any(module == name or module.startswith(name + ".") for name in layer):
            return depth
    return None


@pytest.mark.parametrize(("module", "path"), _modules("ml_core"), ids=lambda v: v if isinstance(v, str) else "")
def test_ml_core_imports_only_itself_and_only_downwards(module: str, path: Path) -> None:
    own = _layer(module)
    for imported in _imports(path):
        assert imported.split(".")[0] == "ml_core", f"{module} imports {imported}"
        if imported == "ml_core":
            continue
        depth = _layer(imported)
        assert depth is not None, f"{imported} (imported by {module}) belongs to no layer of ml_core"
        if own is not None:
            assert depth <= own, f"{module} (layer {own}) imports {imported} (layer {depth}): an import upwards"


def test_every_ml_core_module_sits_in_a_layer() -> None:
    stray = [m for m, _ in _modules("ml_core") if m != "ml_core.__init__" and _layer(m) is None]
    assert not stray, f"modules in no layer of ml_core: {stray}"


def test_worlds_and_resources_build_on_ml_core_only() -> None:
    for package, allowed in (("worlds", {"ml_core", "worlds"}), ("resources", {"ml_core", "resources", "dagster"})):
        for module, path in _modules(package):
            bad = {i for i in _imports(path) if i.split(".")[0] not in allowed}
            assert not bad, f"{module} imports {sorted(bad)}"


def test_no_asset_module_imports_another() -> None:
    for module, path in _modules("assets"):
        for imported in _imports(path):
            top = imported.split(".")[0]
            assert top in ("ml_core", "resources", "assets", "dagster"), f"{module} imports {imported}"
            if top == "assets" and imported != "assets" and module != "assets.__init__":
                assert imported in SHARED_ASSET_MODULES, f"{module} imports the asset module {imported}"


def test_benchmarks_never_import_assets() -> None:
    for module, path in _modules("benchmarks"):
        bad = {i for i in _imports(path) if i.split(".")[0] in ("assets", "tests")}
        assert not bad, f"{module} imports {sorted(bad)}"
