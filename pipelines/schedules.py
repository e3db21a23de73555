"""The re-embedding schedule: every hour (``MODELREC_REEMBED_CRON``), re-embed the model partitions that are stale or missing.

Dagster gives a schedule tick 60 s. Checking a model reads three objects of the artifact store, which
on an object store takes tens of milliseconds each (``benchmarks/rehearsal.py --s3-models``), so one
tick checks models for at most :data:`SWEEP_BUDGET_SECONDS` and records in the instance's key-value
store where the next tick resumes: a large zoo on S3 is swept over several ticks, a local one in one.
"""

from dagster import RunRequest, ScheduleEvaluationContext, SkipReason, schedule

from assets.shared.partitions import MODELS
from pipelines.automation_settings import schedule_status
from pipelines.jobs import embed_models_job
from pipelines.staleness import sweep_stale_models
from resources.artifact_store import ArtifactStore
from resources.settings import reembed_cron

SWEEP_BUDGET_SECONDS = 40.0  # of Dagster's 60 s per schedule tick
RESUME_KEY = "modelrec/reembed_stale_models/resume_at"  # in the instance's key-value store


@schedule(
    job=embed_models_job,
    cron_schedule=reembed_cron(),
    default_status=schedule_status(),
    description="Re-embed only the model partitions whose embedding is missing or stale "
    "(autoencoder retrained, checkpoint replaced).",
)
def reembed_stale_models(context: ScheduleEvaluationContext, store: ArtifactStore):
    storage = context.instance.run_storage
    start = storage.get_cursor_values({RESUME_KEY}).get(RESUME_KEY) or None
    sweep = sweep_stale_models(store, context.instance.get_dynamic_partitions(MODELS), start, SWEEP_BUDGET_SECONDS)
    storage.set_cursor_values({RESUME_KEY: sweep.resume_at or ""})
    if sweep.resume_at:
        context.log.info(f"checked {sweep.checked} model(s) from {start or 'the first'} in this tick's time; "
                         f"the next tick resumes at {sweep.resume_at}")
    stale = sweep.stale
    if not stale:
        return SkipReason(f"the {sweep.checked} model embedding(s) checked are up to date")
    context.log.info(f"re-embedding {len(stale)} model(s): {[(s.key, s.reason) for s in stale][:20]}")
    return [
        RunRequest(
            partition_key=s.key,
            run_key=f"reembed:{s.key}:{s.autoencoder_hash[:16]}:{s.reason}",
            tags={"modelrec/reason": s.reason},
        )
        for s in stale
    ]


ALL_SCHEDULES = [reembed_stale_models]
