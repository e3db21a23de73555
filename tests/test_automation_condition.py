"""``model_recommendations``' automation: an upstream re-materialization that changed nothing (same data
version: a cache hit) requests no downstream run; one with new content does."""

import warnings

from dagster import (
    AssetSelection,
    BetaWarning,
    DagsterInstance,
    DataVersion,
    Output,
    asset,
    evaluate_automation_conditions,
    materialize,
)

from assets.model_recommendations import refresh_when_inputs_change

CONTENT = {"value": "a"}


@asset
def upstream():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)
        return Output(CONTENT["value"], data_version=DataVersion(CONTENT["value"]))


@asset(deps=[upstream], automation_condition=refresh_when_inputs_change(AssetSelection.assets("upstream")))
def downstream() -> None:
    return None


def _requested(instance, cursor):
    result = evaluate_automation_conditions(defs=[upstream, downstream], instance=instance, cursor=cursor)
    return result.total_requested, result.cursor


def test_same_data_version_requests_nothing_new_content_does():
    instance = DagsterInstance.ephemeral()
    CONTENT["value"] = "a"
    assert materialize([upstream, downstream], instance=instance).success
    _, cursor = _requested(instance, None)
    assert materialize([upstream], instance=instance).success  # a cache hit: same data version
    requested, cursor = _requested(instance, cursor)
    assert requested == 0
    CONTENT["value"] = "b"
    assert materialize([upstream], instance=instance).success  # new content
    requested, cursor = _requested(instance, cursor)
    assert requested == 1
