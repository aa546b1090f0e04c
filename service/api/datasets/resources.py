"""Views of /v1/datasets."""

from collections.abc import Mapping

from flask.views import MethodView
from marshmallow import ValidationError

from service.api.blueprint import Blueprint
from service.api.body import JSON, MULTIPART, Body
from service.api.datasets.schemas import (
    ColumnTypesField,
    DatasetNameArgsSchema,
    DatasetQueryArgsSchema,
    DatasetSchema,
    DatasetUploadSchema,
)
from service.api.services import services, tenant
from service.api.spec import link, links, problem_doc
from service.api.streams import uploaded_table
from service.usecases import datasets
from service.usecases.errors import InvalidRequest

blp = Blueprint("datasets", __name__, url_prefix="/v1/datasets", description="Tabular datasets")


#: A job's or a sweep's body fields for training on a new dataset (its first column as
#: the target); the rest of the body is generated or the client's.
_TRAIN_ON_IT = {"dataset_id": "$response.body#/id", "target": "$response.body#/columns/0/name"}

#: A dataset form's fields besides its ``file``. ``column_types`` types the file as it is
#: read, so it must come before the file part; ``name`` may come after it.
_FORM_FIELDS = ("name", "column_types")


def _check_form_fields(form: Mapping[str, str]) -> None:
    """Refuse a form field the upload does not read (400 naming it), as a JSON body's
    unknown field is refused."""
    unknown = sorted(set(form) - set(_FORM_FIELDS))
    if unknown:
        raise InvalidRequest("unknown form field", unknown[0])


def _form_column_types(args: dict, form: Mapping[str, str]) -> dict | None:
    """The types a form's upload declares: ``column_types`` in the query or in the form
    before its file part, checked alike (in both: a 400 naming it)."""
    if "column_types" not in form:
        return args.get("column_types")
    if "column_types" in args:
        raise InvalidRequest(
            "is given both in the query and in the form; give it once", "column_types"
        )
    try:
        return ColumnTypesField().deserialize(form["column_types"])
    except ValidationError as exc:
        raise InvalidRequest(exc.messages[0], "column_types") from None


def _form_table(args: dict, body: Body, limit: int) -> datasets.TableUpload:
    """A form's upload: its fields before the file checked at once, those after it once
    the file has been read (before anything is stored)."""
    _check_form_fields(body.form)
    column_types = _form_column_types(args, body.form)
    before_file = set(body.form)

    def check_form(form: Mapping[str, str]) -> None:
        _check_form_fields(form)
        if "column_types" in form and "column_types" not in before_file:
            raise InvalidRequest(
                "must come before the form's file part (the file is typed as it is read)",
                "column_types",
            )

    return uploaded_table(
        body,
        limit,
        name=args.get("name"),
        column_types=column_types,
        check_form=check_form,
    )


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
        description="JSON records (?column_types= applies; the body's name wins over "
        "?name=); a CSV, Parquet or JSON Lines body (name in ?name=; CSV "
        "may be gzip- or zstd-compressed); or a form with `file`, optional `name` (before "
        "?name=) and optional `column_types` (before the `file` part; not also in the "
        "query); any other form field, a field given twice or a second `file` is a 400. "
        "A table body is read as it streams in, "
        "at any size up to the upload limit.",
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
            table = datasets.TableUpload(
                body.data.get("name") or args.get("name"),
                records=body.data["records"],
                column_types=args.get("column_types"),
            )
        elif body.media_type == MULTIPART:
            table = _form_table(args, body, svc.settings.max_upload_bytes)
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
