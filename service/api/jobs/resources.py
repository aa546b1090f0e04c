"""Views of /v1/jobs."""

from functools import partial

from flask import request, url_for
from flask.views import MethodView

from service.api.common import (
    Blueprint,
    body_kind,
    filename_stem,
    form_name,
    json_body,
    problem_doc,
    request_body_doc,
    services,
    tenant,
)
from service.api.jobs.schemas import JobCreateSchema, JobQueryArgsSchema, JobSchema, MetricsSchema
from service.api.streams import MultipartUpload, json_field, multipart_source
from service.usecases import jobs
from service.usecases.errors import InvalidRequest

blp = Blueprint("jobs", __name__, url_prefix="/v1/jobs", description="Training jobs")


@blp.route("")
class Jobs(MethodView):
    @blp.arguments(JobQueryArgsSchema, location="query")
    @blp.response(200, JobSchema(many=True))
    def get(self, args):
        """List jobs, newest first, optionally filtered"""
        return jobs.list_jobs(services().database, tenant(), **args)

    @blp.doc(
        **request_body_doc(
            "JobCreate",
            "multipart/form-data",
            description="JSON; or a form with `file` (CSV), `target`, optional `model_name` "
            "(default: the file's stem), `features` (JSON list) and `hyperparameters` "
            "(JSON object), to upload and train in one call.",
        ),
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
    @blp.alt_response(400, **problem_doc("Invalid input; errors names each field"))
    @blp.alt_response(415, **problem_doc("Unsupported Content-Type"))
    def post(self):
        """Submit a training job"""
        svc = services()
        kind = body_kind("application/json", "multipart/form-data")
        key = request.headers.get("Idempotency-Key") or None
        if key is not None and len(key) > 255:
            raise InvalidRequest("must be at most 255 characters", "Idempotency-Key")
        upload = None
        if kind == "application/json":
            job_request = jobs.JobRequest(**JobCreateSchema().load(json_body()))
        else:
            upload = multipart_source(svc.settings.max_upload_bytes)
            if not upload.open_file():
                raise InvalidRequest("a CSV file is required in the form field 'file'", "file")
            job_request = partial(_form_job, upload)
        job = jobs.submit_job(
            svc.database,
            svc.settings,
            svc.publisher,
            tenant(),
            job_request,
            idempotency_key=key,
            upload=upload,
            upload_format=upload.format() if upload else "csv",
        )
        return job, {"Location": url_for("jobs.JobById", job_id=job.id)}


@blp.route("/<string:job_id>")
class JobById(MethodView):
    @blp.response(200, JobSchema)
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


def _form_job(upload: MultipartUpload) -> tuple[jobs.JobRequest, str]:
    """The job a form describes (its fields read once its file has been streamed)."""
    form = upload.fields()
    data = {}
    for name in ("target", "model_name", "dataset_id"):
        if name in form:
            data[name] = form[name]
    data.setdefault("model_name", filename_stem(upload.filename, "model"))
    for name in ("features", "hyperparameters", "column_types"):
        if name in form:
            data[name] = json_field(form, name)
    unknown = set(form) - {
        "target",
        "model_name",
        "features",
        "hyperparameters",
        "column_types",
        "name",
    }
    if unknown:
        raise InvalidRequest("unknown form field", sorted(unknown)[0])
    body = JobCreateSchema().load(data)
    name = form_name(form.get("name")) or filename_stem(upload.filename)
    return jobs.JobRequest(**body), name
