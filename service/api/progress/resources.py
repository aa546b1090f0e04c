"""Views of /v1/jobs/{id}/events (Server-Sent Events) and /v1/jobs/{id}/plot."""

from collections.abc import Iterable

from flask import Response
from flask.views import MethodView

from service.api.blueprint import Blueprint
from service.api.jobs.schemas import EpochMetricSchema
from service.api.progress.schemas import (
    EventsArgsSchema,
    EventsHeadersSchema,
    PlotArgsSchema,
    status_event_schema,
)
from service.api.services import services, tenant
from service.api.spec import problem_doc
from service.plotting import FORMATS
from service.usecases import progress

blp = Blueprint(
    "progress",
    __name__,
    url_prefix="/v1/jobs",
    description="A job's progress: a live event stream and loss/accuracy plots",
)

EVENT_STREAM = "text/event-stream"
# How long an EventSource waits before it reconnects after the stream closes.
RETRY_MS = 2000
HEARTBEAT_SECONDS = 15.0
POLL_SECONDS = 1.0

_EVENTS_DESCRIPTION = (
    "Server-Sent Events: `event: status` (data: the job's id, status, epoch, epochs, "
    "attempt, latest, model, error) first and on every change of status, `event: epoch` "
    "(data: that epoch's metrics, as in /metrics) once per finished epoch, then the "
    "final status event, after which the stream closes. Each event's `id` (`7`, or "
    "`7:running`) resumes the stream after it when sent back as `Last-Event-ID`. Lines "
    "starting with `:` are heartbeats. A stream also closes after "
    "TRAINSERVE_EVENT_STREAM_SECONDS (300 s); reconnect with the last id."
)

_PLOT_DESCRIPTION = (
    "Loss and accuracy (train and validation) per epoch, two panels, as SVG "
    "(`?format=svg`, the default) or PNG (`?format=png`); a job without a finished "
    "epoch gives an image that says so"
)


@blp.route("/<string:job_id>/events")
class JobEvents(MethodView):
    @blp.arguments(EventsHeadersSchema, location="headers")
    @blp.arguments(EventsArgsSchema, location="query")
    @blp.response(
        200, {"type": "string"}, content_type=EVENT_STREAM, description=_EVENTS_DESCRIPTION
    )
    @blp.alt_response(
        204,
        description="Resumed after the final event of a finished job: nothing more will "
        "come (an EventSource stops reconnecting)",
    )
    @blp.alt_response(400, **problem_doc("Last-Event-ID is not an id this stream sends"))
    @blp.alt_response(404, **problem_doc("No such job"))
    def get(self, headers, args, job_id):
        """Stream a job's progress as Server-Sent Events"""
        svc = services()
        header = headers.get("last_event_id")
        field = "Last-Event-ID" if header is not None else "last_event_id"
        cursor = progress.Cursor.parse(header or args.get("last_event_id"), field)
        first = progress.poll(svc.database, tenant(), job_id, cursor)
        if first.finished and not first.events:
            return Response(status=204)
        events = progress.follow(
            svc.database,
            tenant(),
            job_id,
            first,
            poll_seconds=POLL_SECONDS,
            heartbeat_seconds=HEARTBEAT_SECONDS,
            max_seconds=svc.settings.event_stream_seconds,
        )
        return Response(
            _wire(events),
            mimetype=EVENT_STREAM,
            # Proxies must pass each event on at once (nginx buffers otherwise).
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


@blp.route("/<string:job_id>/plot")
class JobPlot(MethodView):
    @blp.arguments(PlotArgsSchema, location="query")
    @blp.response(
        200,
        {"type": "string"},
        content_type=FORMATS["svg"],
        description=_PLOT_DESCRIPTION,
    )
    @blp.alt_response(
        200,
        schema={"type": "string", "format": "binary"},
        content_type=FORMATS["png"],
        description=_PLOT_DESCRIPTION,
    )
    @blp.alt_response(400, **problem_doc("Unknown format"))
    @blp.alt_response(404, **problem_doc("No such job"))
    def get(self, args, job_id):
        """Plot a job's loss and accuracy curves (SVG or PNG)"""
        image = progress.job_plot(services().database, tenant(), job_id, args["format"])
        return Response(
            image, mimetype=FORMATS[args["format"]], headers={"Cache-Control": "no-cache"}
        )


def _wire(events: Iterable[progress.Event | None]) -> Iterable[str]:
    """Events in the text/event-stream format; ``None`` becomes a heartbeat comment."""
    yield f"retry: {RETRY_MS}\n\n"
    epoch_schema, status_schema = EpochMetricSchema(), status_event_schema()
    for event in events:
        if event is None:
            yield ": heartbeat\n\n"
            continue
        schema = epoch_schema if event.kind == "epoch" else status_schema
        data = schema.dumps(event.item, separators=(",", ":"))
        yield f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n"
