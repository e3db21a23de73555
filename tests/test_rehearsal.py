"""The rehearsal (benchmarks/rehearsal.py) at reduced counts, on a fresh PostgreSQL database.

PostgreSQL must answer on 127.0.0.1:5432 (user postgres, trust) or ``MODELREC_REHEARSAL_DSN``: where it
does not, these tests FAIL (a missing service is an error here, never a skip).
"""

from __future__ import annotations

import os

import pytest

from benchmarks import rehearsal
from resources.settings import setting

DSN = setting("MODELREC_REHEARSAL_DSN", "postgresql://postgres@127.0.0.1:5432")
MODELS, NEW, DATASETS, RANGE = 200, 20, 20, 30


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    with rehearsal.fresh_database(DSN) as database:
        home = tmp_path_factory.mktemp("rehearsal")
        instance = rehearsal.postgres_instance(home / "dagster_home", database)
        try:
            yield rehearsal.rehearse(instance, home, models=MODELS, new_models=NEW, datasets=DATASETS,
                                     run_partitions=RANGE)
        finally:
            instance.dispose()


def _row(result, prefix: str) -> rehearsal.Row:
    (row,) = [r for r in result.rows if r.operation.startswith(prefix)]
    return row


def test_every_operation_counts_what_it_did(result):
    assert _row(result, "register 200 models").count == MODELS + DATASETS
    assert _row(result, "zoo sensor, tick with 20 new").count == NEW  # one run request per new model
    assert _row(result, "register the tick's").count == NEW
    assert _row(result, "list the model partitions").count == MODELS + NEW
    assert _row(result, "list the dataset partitions").count == DATASETS
    # the schedule finds exactly the seeded stale embeddings plus the new models' missing ones
    assert _row(result, "re-embedding schedule").count == result.facts["seeded_stale"] == MODELS // 10 + NEW
    assert _row(result, "one run over").count == RANGE  # every partition of the range materialized


def test_ticks_on_unchanged_files_request_nothing(result):
    assert result.facts["first_tick_run_requests"] == 0  # already registered: recorded, not re-run
    assert result.facts["steady_tick_run_requests"] == 0


def test_the_cursor_is_a_digest_and_the_fingerprints_are_in_postgres(result):
    assert result.facts["recorded_files"] == MODELS
    assert result.facts["cursor_bytes"] < 64 and result.facts["cursor_bytes"] * 100 < result.facts["fingerprints_bytes"]


def test_every_operation_is_inside_its_limit(result):
    failed = [r.operation for r in result.rows if not r.passed]
    assert not failed, rehearsal.format_table(result.rows)
    assert all(r.limit_s is not None for r in result.rows if "tick" in r.operation)


def test_a_row_over_its_limit_fails():
    assert not rehearsal.Row("x", 1, seconds=61.0, limit_s=60.0).passed
    assert "FAIL" in rehearsal.format_table([rehearsal.Row("x", 1, seconds=61.0, limit_s=60.0)])


def test_the_database_is_dropped_afterwards():
    import psycopg2

    with rehearsal.fresh_database(DSN) as database:
        name = database.rsplit("/", 1)[1]
    connection = psycopg2.connect(f"{DSN.rstrip('/')}/postgres")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,))
            assert cursor.fetchone()[0] == 0
    finally:
        connection.close()


@pytest.mark.slow  # starts moto's S3 server as a subprocess
def test_the_staleness_query_on_s3_finds_the_same_models_with_one_thread_or_many(tmp_path):
    before = {name: os.environ.get(name) for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID")}
    s3 = rehearsal.rehearse_s3_staleness(tmp_path, models=30, total_models=300)
    counts = [row.count for row in s3.rows]
    assert counts[:2] == [s3.facts["s3_seeded_stale"]] * 2 == [30 // rehearsal.STALE_EVERY] * 2
    assert counts[2] == 30  # the schedule tick checked every model inside its budget
    assert {name: os.environ.get(name) for name in before} == before  # the stand-in variables are gone
