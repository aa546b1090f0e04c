"""Views of /v1/jobs."""

import json

from flask import request, url_for
from flask.views import MethodView

from service.api.blueprint import Blueprint
from service.api.body import MULTIPART, Body, filename_stem
from service.api.jobs.schemas import JobCreateSchema, JobQueryArgsSchema, JobSchema, MetricsSchema
from service.api.services import services, tenant
from service.api.spec import link, links, problem_doc
from service.api.streams import uploaded_table
from service.usecases import jobs
from service.usecases.errors import InvalidRequest

blp = Blueprint("jobs", __name__, url_prefix="/v1/jobs", description="Training jobs")


_FORM_FIELDS = ("target", "model_name", "features", "hyperparameters", "column_types", "name")
_JSON_FIELDS = ("features", "hyperparameters", "column_types")


def _form_fields(body: Body) -> dict:
    """A job form's fields as the JSON body's (``features``, ``hyperparameters`` and
    ``column_types`` are JSON text); ``name`` names the uploaded dataset."""
    form = body.form
    data = {name: form[name] for name in ("target", "model_name", "dataset_id") if name in form}
    data.setdefault("model_name", filename_stem(body.filename, "model"))
    for name in _JSON_FIELDS:
        if name in form:
            try:
                data[name] = json.loads(form[name])
            except ValueError as exc:
                raise InvalidRequest(f"is not valid JSON: {exc}", name) from None
    unknown = set(form) - set(_FORM_FIELDS)
    if unknown:
        raise InvalidRequest("unknown form field", sorted(unknown)[0])
    return data


_JOB = "$response.body#/id"
#: Where a job's answer leads: itself, its metrics, its cancel, and its model (which
#: exists once the job has succeeded).
JOB_LINKS = {
    "GetJob": link("/v1/jobs/{job_id}", job_id=_JOB),
    "GetJobMetrics": link("/v1/jobs/{job_id}/metrics", job_id=_JOB),
    "GetJobPlot": link("/v1/jobs/{job_id}/plot", job_id=_JOB),
    "CancelJob": link("/v1/jobs/{job_id}/cancel", "post", job_id=_JOB),
    "GetModel": link("/v1/models/{name}", name="$response.body#/model_name"),
}


@blp.route("")
class Jobs(MethodView):
    @blp.arguments(JobQueryArgsSchema, location="query")
    @blp.response(200, JobSchema(many=True))
    def get(self, args):
        """List jobs, newest first, optionally filtered"""
        return jobs.list_jobs(services().database, tenant(), **args)

    @blp.body(
        JobCreateSchema,
        multipart=True,
        form=_form_fields,
        description="JSON; or a form with `file` (CSV), `target`, optional `model_name` "
        "(default: the file's stem), `features` (JSON list) and `hyperparameters` "
        "(JSON object), to upload and train in one call.",
    )
    @blp.doc(
        parameters=[
            {
                "in": "header",
                "name": "Idempotency-Key",
                "schema": {"type": "string", "maxLength": 255},
                "description": "A retried POST with the same key returns the same job",
            }
        ],
    )
    @blp.response(202, JobSchema, headers={"Location": {"schema": {"type": "string"}}})
    @blp.doc(**links(202, **JOB_LINKS))
    @blp.alt_response(400, **problem_doc("Invalid input; errors names each field"))
    @blp.alt_response(415, **problem_doc("Unsupported Content-Type"))
    def post(self, body: Body):
        """Submit a training job"""
        svc = services()
        upload, request_ = None, None
        if body.media_type == MULTIPART:
            # The form's fields may follow its file: they are read once the file has been.
            upload = uploaded_table(body, svc.settings.max_upload_bytes)
            request_ = lambda: jobs.JobRequest(**body.complete())  # noqa: E731
        key = request.headers.get("Idempotency-Key") or None
        if key is not None and len(key) > 255:
            raise InvalidRequest("must be at most 255 characters", "Idempotency-Key")
        job = jobs.submit_job(
            svc.database,
            svc.settings,
            svc.publisher,
            tenant(),
            request_ or jobs.JobRequest(**body.data),
            idempotency_key=key,
            upload=upload,
        )
        return job, {"Location": url_for("jobs.JobById", job_id=job.id)}


@blp.route("/<string:job_id>")
class JobById(MethodView):
    @blp.response(200, JobSchema)
    @blp.doc(**links(200, **JOB_LINKS))
    @blp.alt_response(404, **problem_doc("No such job"))
    def get(self, job_id):
        """Get a job's status and progress"""
        return jobs.get_job(services().database, tenant(), job_id)


@blp.route("/<string:job_id>/metrics")
class JobMetrics(MethodView):
    @blp.response(200, MetricsSchema)
    @blp.alt_response(404, **problem_doc("No such job"))
    def get(self, job_id):
        """Get every finished epoch's metrics (also while the job runs)"""
        return {"epochs": jobs.job_metrics(services().database, tenant(), job_id)}


@blp.route("/<string:job_id>/cancel")
class JobCancel(MethodView):
    @blp.response(202, JobSchema)
    @blp.alt_response(404, **problem_doc("No such job"))
    @blp.alt_response(409, **problem_doc("The job has already finished"))
    def post(self, job_id):
        """Cancel a job (a running one stops within a few seconds)"""
        return jobs.cancel_job(services().database, tenant(), job_id)
