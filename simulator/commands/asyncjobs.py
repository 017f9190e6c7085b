"""queryAsyncJobResult (any job) and listAsyncJobs (only jobs still pending)."""

from __future__ import annotations

from stackfleet.simulator import errors, jobs
from stackfleet.simulator.commands import Ctx, Inner, command, listing


@command("queryAsyncJobResult")
def query(ctx: Ctx) -> Inner:
    job_id = ctx.need("jobid")
    job = jobs.get(ctx.tx, job_id)
    if job is None:
        raise errors.unknown_id("jobid", job_id)
    return jobs.render(job)


@command("listAsyncJobs")
def list_jobs(ctx: Ctx) -> Inner:
    return listing(ctx, "asyncjobs", [jobs.render(j) for j in jobs.pending(ctx.tx)])
