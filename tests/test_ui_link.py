"""The link `make ui` prints: the lineage graph with every asset group open (fast; the browser test opens it)."""

from urllib.parse import parse_qs, urlsplit

from assets import ALL_ASSETS, ALL_SOURCES
from pipelines.ui import LOCATION, asset_groups, lineage_path, ui_address


def test_the_link_names_every_group_of_the_code_location_in_both_id_forms():
    groups = {g for a in ALL_ASSETS + ALL_SOURCES for g in a.group_names_by_key.values()}
    assert set(asset_groups()) == groups and len(groups) >= 5
    query = parse_qs(urlsplit(lineage_path(asset_groups())).query)
    expanded = query["expanded"][0].split(",")
    assert set(expanded) == {f"global@global:{g}" for g in groups} | {f"__repository__@{LOCATION}:{g}" for g in groups}


def test_the_address_is_read_from_dagster_devs_arguments():
    assert ui_address(["-w", "workspace.yaml"]) == "http://127.0.0.1:3000"
    assert ui_address(["-w", "workspace.yaml", "-h", "0.0.0.0", "-p", "3100"]) == "http://0.0.0.0:3100"
    assert ui_address(["--port", "4000", "--host", "localhost"]) == "http://localhost:4000"
