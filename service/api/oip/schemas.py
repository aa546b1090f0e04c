"""Open Inference Protocol (KServe v2) request and response bodies."""

from marshmallow import INCLUDE, Schema, fields, validate

DATATYPES = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
)


class _Open(Schema):
    """The protocol allows extension fields (``parameters`` and the like)."""

    class Meta:
        unknown = INCLUDE


class TensorSchema(_Open):
    name = fields.String(required=True)
    shape = fields.List(fields.Integer(validate=validate.Range(min=-1)), required=True)
    datatype = fields.String(required=True, validate=validate.OneOf(DATATYPES))
    parameters = fields.Dict()
    data = fields.Raw(
        metadata={
            "description": "Row-major values (flat or nested); absent when the tensor's "
            "bytes follow the JSON header (parameters.binary_data_size)"
        }
    )


class RequestedOutputSchema(_Open):
    name = fields.String(required=True)
    parameters = fields.Dict()


class InferRequestSchema(_Open):
    id = fields.String()
    parameters = fields.Dict()
    inputs = fields.List(
        fields.Nested(TensorSchema), required=True, validate=validate.Length(min=1)
    )
    outputs = fields.List(fields.Nested(RequestedOutputSchema))


class OutputTensorSchema(Schema):
    name = fields.String()
    shape = fields.List(fields.Integer())
    datatype = fields.String()
    parameters = fields.Dict(
        metadata={"description": "binary_data_size when the data follows the JSON header"}
    )
    data = fields.List(fields.Raw())


class InferResponseSchema(Schema):
    model_name = fields.String()
    model_version = fields.String()
    id = fields.String()
    parameters = fields.Dict(metadata={"description": "The request's own parameters, echoed"})
    outputs = fields.List(fields.Nested(OutputTensorSchema))


class TensorMetadataSchema(Schema):
    name = fields.String()
    datatype = fields.String()
    shape = fields.List(fields.Integer())


class ModelMetadataSchema(Schema):
    name = fields.String()
    versions = fields.List(fields.String())
    platform = fields.String()
    inputs = fields.List(fields.Nested(TensorMetadataSchema))
    outputs = fields.List(fields.Nested(TensorMetadataSchema))


class ModelReadySchema(Schema):
    name = fields.String()
    ready = fields.Boolean()


class LiveSchema(Schema):
    live = fields.Boolean()


class ReadySchema(Schema):
    ready = fields.Boolean()


class ServerMetadataSchema(Schema):
    name = fields.String()
    version = fields.String()
    extensions = fields.List(fields.String())


class ErrorSchema(Schema):
    error = fields.String()
