"""Views of /v1/datasets."""

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
from service.api.datasets.schemas import (
    DatasetNameArgsSchema,
    DatasetQueryArgsSchema,
    DatasetSchema,
    DatasetUploadSchema,
)
from service.api.streams import TABLE_TYPES, body_source, multipart_source
from service.usecases import datasets
from service.usecases.errors import InvalidRequest

blp = Blueprint("datasets", __name__, url_prefix="/v1/datasets", description="Tabular datasets")


@blp.route("")
class Datasets(MethodView):
    @blp.arguments(DatasetQueryArgsSchema, location="query")
    @blp.response(200, DatasetSchema(many=True))
    def get(self, args):
        """List datasets, newest first"""
        return datasets.list_datasets(services().database, tenant(), **args)

    @blp.doc(
        **request_body_doc(
            "DatasetUpload",
            "text/csv",
            "multipart/form-data",
            "application/vnd.apache.parquet",
            "application/x-ndjson",
            description="JSON records; a CSV, Parquet or JSON Lines body (name in ?name=; "
            "CSV and JSON Lines may be gzip- or zstd-compressed); or a form with `file` and "
            "optional `name`. The body is streamed: any size up to the upload limit.",
        )
    )
    @blp.arguments(DatasetNameArgsSchema, location="query")
    @blp.response(201, DatasetSchema)
    @blp.alt_response(400, **problem_doc("Invalid input; errors names each field"))
    @blp.alt_response(413, **problem_doc("The body is larger than the upload limit"))
    @blp.alt_response(415, **problem_doc("Unsupported Content-Type"))
    def post(self, args):
        """Upload a dataset (CSV, Parquet, JSON Lines or JSON records)"""
        svc = services()
        kind = body_kind("application/json", "multipart/form-data", *TABLE_TYPES)
        if kind == "application/json":
            body = DatasetUploadSchema().load(json_body())
            return datasets.upload_dataset(
                svc.database, svc.settings, tenant(), name=body.get("name"), records=body["records"]
            )
        column_types = args.get("column_types")
        if kind != "multipart/form-data":
            source, fmt = body_source(svc.settings.max_upload_bytes)
            return datasets.upload_dataset(
                svc.database,
                svc.settings,
                tenant(),
                name=args.get("name"),
                source=source,
                fmt=fmt,
                column_types=column_types,
            )
        form = multipart_source(svc.settings.max_upload_bytes)
        if not form.open_file():
            raise InvalidRequest("a CSV file is required in the form field 'file'", "file")
        name = form_name(form.values.get("name")) or args.get("name")
        return datasets.upload_dataset(
            svc.database,
            svc.settings,
            tenant(),
            source=form,
            fmt=form.format(),
            name=name or filename_stem(form.filename),
            column_types=column_types,
        )


@blp.route("/<string:dataset_id>")
class DatasetById(MethodView):
    @blp.response(200, DatasetSchema)
    @blp.alt_response(404, **problem_doc("No such dataset"))
    def get(self, dataset_id):
        """Get one dataset with its columns"""
        return datasets.get_dataset(services().database, tenant(), dataset_id)

    @blp.response(204)
    @blp.alt_response(404, **problem_doc("No such dataset"))
    @blp.alt_response(409, **problem_doc("A queued or running job uses the dataset"))
    def delete(self, dataset_id):
        """Delete a dataset no queued or running job uses"""
        datasets.delete_dataset(services().database, tenant(), dataset_id)
