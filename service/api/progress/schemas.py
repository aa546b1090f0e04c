"""Progress schemas: the stream's and the plot's query strings, and the status event."""

from marshmallow import EXCLUDE, Schema, fields, validate

from service.api.jobs.schemas import JobSchema
from service.api.schemas import BaseSchema
from service.plotting import FORMATS


class EventsArgsSchema(BaseSchema):
    last_event_id = fields.String(
        validate=validate.Length(max=64),
        metadata={
            "description": "Resume after this event id, for clients that cannot send the "
            "Last-Event-ID header (the header wins when both are given)"
        },
    )


class EventsHeadersSchema(Schema):
    """The request headers this endpoint reads (every other header is ignored)."""

    class Meta:
        unknown = EXCLUDE

    last_event_id = fields.String(
        data_key="Last-Event-ID",
        validate=validate.Length(max=64),
        metadata={"description": "The id of the last event received: resume after it"},
    )


class PlotArgsSchema(BaseSchema):
    format = fields.String(load_default="svg", validate=validate.OneOf(list(FORMATS)))


# The data of a `status` event: the job's state without its inputs.
STATUS_EVENT_FIELDS = ("id", "status", "epoch", "epochs", "attempt", "latest", "model", "error")


def status_event_schema() -> JobSchema:
    return JobSchema(only=STATUS_EVENT_FIELDS)
