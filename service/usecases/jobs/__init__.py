"""Training jobs, cut at their seams:

- ``plan``: :class:`JobRequest` checked against its dataset (:func:`plan_job`, :class:`JobPlan`);
- ``submit``: :func:`submit_job` stores a job, then :func:`publish` hands it to a
  :class:`Publisher`;
- ``queries``: read, list and cancel a tenant's jobs.
"""

from service.usecases.jobs.plan import JobPlan, JobRequest, plan_job
from service.usecases.jobs.queries import (
    cancel_job,
    find_job,
    get_job,
    job_metrics,
    list_jobs,
    request_cancel,
)
from service.usecases.jobs.submit import Publisher, active_jobs, publish, submit_job

__all__ = [
    "JobPlan",
    "JobRequest",
    "Publisher",
    "active_jobs",
    "cancel_job",
    "find_job",
    "get_job",
    "job_metrics",
    "list_jobs",
    "plan_job",
    "publish",
    "request_cancel",
    "submit_job",
]
