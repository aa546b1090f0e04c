"""Views of /v1/datasets."""

from flask.views import MethodView

from service.api.blueprint import Blueprint
from service.api.body import JSON, Body
from service.api.datasets.schemas import (
    DatasetNameArgsSchema,
    DatasetQueryArgsSchema,
    DatasetSchema,
    DatasetUploadSchema,
)
from service.api.services import services, tenant
from service.api.spec import link, links, problem_doc
from service.api.streams import uploaded_table
from service.usecases import datasets

blp = Blueprint("datasets", __name__, url_prefix="/v1/datasets", description="Tabular datasets")


#: A job's or a sweep's body fields for training on a new dataset (its first column as
#: the target); the rest of the body is generated or the client's.
_TRAIN_ON_IT = {"dataset_id": "$response.body#/id", "target": "$response.body#/columns/0/name"}


@blp.route("")
class Datasets(MethodView):
    @blp.arguments(DatasetQueryArgsSchema, location="query")
    @blp.response(200, DatasetSchema(many=True))
    def get(self, args):
        """List datasets, newest first"""
        return datasets.list_datasets(services().database, tenant(), **args)

    @blp.arguments(DatasetNameArgsSchema, location="query")
    @blp.body(
        DatasetUploadSchema,
        tables=True,
        multipart=True,
        description="JSON records; a CSV, Parquet or JSON Lines body (name in ?name=; CSV "
        "may be gzip- or zstd-compressed); or a form with `file` and optional `name`. "
        "A table body is read as it streams in, at any size up to the upload limit.",
    )
    @blp.response(201, DatasetSchema)
    @blp.doc(
        **links(
            201,
            GetDataset=link("/v1/datasets/{dataset_id}", dataset_id="$response.body#/id"),
            TrainOnDataset=link(
                "/v1/jobs",
                "post",
                body=_TRAIN_ON_IT,
            ),
            SweepOnDataset=link(
                "/v1/sweeps",
                "post",
                body=_TRAIN_ON_IT,
            ),
            DeleteDataset=link(
                "/v1/datasets/{dataset_id}", "delete", dataset_id="$response.body#/id"
            ),
        )
    )
    @blp.alt_response(400, **problem_doc("Invalid input; errors names each field"))
    @blp.alt_response(413, **problem_doc("The body is larger than the upload limit"))
    @blp.alt_response(415, **problem_doc("Unsupported Content-Type"))
    def post(self, args, body: Body):
        """Upload a dataset (CSV, Parquet, JSON Lines or JSON records)"""
        svc = services()
        if body.media_type == JSON:
            table = datasets.TableUpload(body.data.get("name"), records=body.data["records"])
        else:
            table = uploaded_table(
                body,
                svc.settings.max_upload_bytes,
                name=args.get("name"),
                column_types=args.get("column_types"),
            )
        return datasets.upload_dataset(svc.database, svc.settings, tenant(), table)


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
