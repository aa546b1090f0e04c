"""The Blueprint every resource uses: flask-smorest's, with 400 for invalid arguments and
``body``, which reads and documents a request body from one declaration."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flask_smorest
from marshmallow import Schema
from webargs.flaskparser import FlaskParser

from service.api.body import Body, BodySpec


class _Parser(FlaskParser):
    DEFAULT_VALIDATION_STATUS = 400


class Blueprint(flask_smorest.Blueprint):
    """A Blueprint whose argument validation failures are 400s."""

    ARGUMENTS_PARSER = _Parser()

    def body(
        self,
        schema: type[Schema] | Schema,
        *,
        csv: bool = False,
        multipart: bool = False,
        form: Callable[[Body], dict] | None = None,
        load_json: Callable[[bytes], Any] | None = None,
        untyped_json: bool = False,
        description: str = "",
        tables: bool = False,
    ) -> Callable:
        """Read the request body and pass it to the view as a last positional
        :class:`~service.api.body.Body`; document it as the operation's ``requestBody``.

        The body is JSON loaded by ``schema`` (or by ``load_json`` from the raw bytes,
        ``schema`` then only documents it); with ``csv``, also a ``text/csv`` stream;
        with ``multipart``, also a form with a ``file`` part (``form`` turns the form
        into fields for ``schema``). ``untyped_json``: a body without Content-Type is
        JSON; ``tables``: also CSV, Parquet and JSON Lines bodies as streams, under the
        upload limit (``MAX_UPLOAD_BYTES``). Anything else is a 415.
        """
        spec = BodySpec(schema, csv, multipart, form, load_json, untyped_json, description, tables)

        def decorator(view: Callable) -> Callable:
            @functools.wraps(view)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return view(*args, spec.read(), **kwargs)

            return self.doc(requestBody=spec.doc())(wrapper)

        return decorator


def stacked(*decorators: Callable[[Callable], Callable]) -> Callable[[Callable], Callable]:
    """One decorator applying ``decorators`` as if written one above the other (top
    first): the contract several endpoints share, declared once."""

    def decorate(view: Callable) -> Callable:
        for decorator in reversed(decorators):
            view = decorator(view)
        return view

    return decorate
