"""Submit a sweep: its search expanded into trials (``service.usecases.search``), each
checked like a job's hyperparameters, all stored at once or none."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from service.config import Settings
from service.db.models import Sweep, SweepStatus
from service.db.session import Database
from service.usecases.aliases import check_alias
from service.usecases.errors import InvalidRequest
from service.usecases.jobs import Publisher, plan_job
from service.usecases.search import HyperparameterLoader, expand, source_field
from service.usecases.stopping import StoppingRule
from service.usecases.sweeps.leaderboard import SweepReport, get_sweep
from service.usecases.sweeps.state import advance_in, job_request, publish_trials

# The metrics a sweep can optimise (columns of every epoch row) and their natural mode.
METRICS = {"val_loss": "min", "val_accuracy": "max", "train_loss": "min", "train_accuracy": "max"}


@dataclass(frozen=True)
class SweepRequest:
    """A sweep submission whose fields have their shapes; ``hyperparameters`` (the base of
    every trial) and ``search`` are checked and expanded into trials by submit."""

    dataset_id: str
    target: str
    model_name: str
    hyperparameters: dict[str, Any]
    search: dict[str, Any]
    metric: str = "val_loss"
    mode: str | None = None
    max_parallel: int = 2
    early_stopping: StoppingRule = field(default_factory=StoppingRule)
    promote_to: str | None = None
    features: list[str] | None = None
    column_types: dict[str, str] | None = None


def submit_sweep(
    db: Database,
    settings: Settings,
    publisher: Publisher,
    tenant: str,
    request: SweepRequest,
    load_hyperparameters: HyperparameterLoader,
) -> SweepReport:
    """Expand the search into trials, check each (``load_hyperparameters``, then against
    the dataset), store the sweep and its first trials, then publish those. Nothing is
    stored if any trial is refused."""
    base, trials = expand(request.search, request.hyperparameters, load_hyperparameters)
    if base.get("seed") is None:
        # One seed for every trial (unless the search varies it): the trials are compared
        # on one validation split, and a worker encodes the data once for all of them.
        base = {**base, "seed": random.randrange(2**31)}
    if request.max_parallel > settings.max_active_jobs_per_tenant:
        raise InvalidRequest(
            f"must be at most the per-tenant active-job limit "
            f"({settings.max_active_jobs_per_tenant})",
            "max_parallel",
        )
    if request.promote_to is not None:
        check_alias(request.promote_to, "promote_to")
    mode = request.mode or METRICS[request.metric]
    with db.transaction() as session:
        plan = plan_job(session, settings, tenant, job_request(request))
        for trial, values in enumerate(trials):
            try:
                plan.check(settings, {**base, **values})
            except InvalidRequest as exc:
                raise InvalidRequest(
                    f"trial {trial}: {exc.message}",
                    source_field(request.search, exc.field, values),
                ) from None
        sweep = Sweep(
            tenant=tenant,
            dataset_id=request.dataset_id,
            target=request.target,
            features=request.features,
            column_types=request.column_types,
            model_name=request.model_name,
            hyperparameters=base,
            search=request.search,
            trials=trials,
            metric=request.metric,
            mode=mode,
            max_parallel=request.max_parallel,
            early_stopping=request.early_stopping.to_json(),
            promote_to=request.promote_to,
            status=SweepStatus.RUNNING,
            cancel_requested=False,
            created_trials=0,
        )
        session.add(sweep)
        session.flush()
        created = advance_in(session, settings, sweep)
    publish_trials(db, publisher, created)
    return get_sweep(db, tenant, sweep.id)
