"""The re-embedding schedule: every hour (``MODELREC_REEMBED_CRON``), re-embed the model partitions that are stale or missing."""

from dagster import RunRequest, ScheduleEvaluationContext, SkipReason, schedule

from assets.partitions import MODELS
from pipelines.automation_settings import schedule_status
from pipelines.jobs import embed_models_job
from pipelines.staleness import stale_model_embeddings
from resources.artifact_store import ArtifactStore
from resources.settings import reembed_cron


@schedule(
    job=embed_models_job,
    cron_schedule=reembed_cron(),
    default_status=schedule_status(),
    description="Re-embed only the model partitions whose embedding is missing or stale "
    "(autoencoder retrained, checkpoint replaced).",
)
def reembed_stale_models(context: ScheduleEvaluationContext, store: ArtifactStore):
    stale = stale_model_embeddings(store, context.instance.get_dynamic_partitions(MODELS))
    if not stale:
        return SkipReason("every model embedding is up to date")
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
