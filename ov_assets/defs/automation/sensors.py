"""The landing sensor: new files in the landing folder reach PostgreSQL and the object store
within about a minute, without waiting for a schedule (CONTRACT §10).

Logic and its guarantees are in ``landing_runs`` (one run per affected partition, run key =
partition + digest of its new files, a cursor, growing files wait). Runs go to
``pqr_landing_job`` (in-process executor) with the partition tags of ``concurrency``; the run
queue's tag limits keep them from overlapping other writers of the same partition.

The sensor is RUNNING by default (also in ``dagster dev``): new files are the point of the
pipeline. Stop it in the UI to pause ingestion.
"""

from __future__ import annotations

import dagster as dg

from ov_assets.defs.automation.landing_runs import plan_landing_runs
from ov_assets.defs.automation.run_tags import partition_tags
from ov_assets.defs.jobs import pqr_landing_job
from ov_assets.defs.resources import LandingResource

# Dagster's daemon evaluates sensors in a loop of 5 s (dagster._daemon.sensor's
# MIN_INTERVAL_LOOP_TIME); an interval below that lets every loop tick, so a new file waits
# 2.5 s on average for its tick (10 s ticked every 10-15 s). A tick is cheap (a directory
# listing per empresa, the new files opened once, one indexed query), so one gRPC call to the
# code server every 5 s is the daemon's load.
MINIMUM_INTERVAL_SECONDS = 2


@dg.sensor(
    name="landing_sensor",
    job=pqr_landing_job,
    minimum_interval_seconds=MINIMUM_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="New or changed landing files -> one pqr_landing_job run per affected partition.",
)
def landing_sensor(context: dg.SensorEvaluationContext, landing: LandingResource) -> dg.SensorResult:
    plan = plan_landing_runs(landing.index(), context.cursor)
    requests = [
        dg.RunRequest(run_key=run_key, partition_key=key, tags=partition_tags(key, "sensor"))
        for key, (run_key, _names) in plan.runs.items()
    ]
    notes = []
    for empresa, why in sorted(plan.failed.items()):
        # The other empresa's runs are still requested; this one is tried again next tick.
        context.log.error(f"landing folder of {empresa} not indexed: {why}")
        notes.append(f"{empresa} not indexed")
    if plan.waiting:
        notes.append(f"{plan.waiting} files still being written")
    if plan.unroutable:
        notes.append(f"{plan.unroutable} PDFs/attachments wait for their record")
    if plan.out_of_range:
        context.log.warning(f"files routed to days that are no partition: {', '.join(plan.out_of_range[:10])}")
    if notes:
        context.log.info("; ".join(notes))
    if requests:
        context.log.info(
            f"{len(requests)} partitions with new files: "
            + ", ".join(f"{k} ({len(n)})" for k, (_, n) in plan.runs.items())
        )
    skip = None if requests else dg.SkipReason("no new stable files" + (f" ({'; '.join(notes)})" if notes else ""))
    return dg.SensorResult(run_requests=requests, cursor=plan.cursor, skip_reason=skip)


all_sensors = [landing_sensor]
