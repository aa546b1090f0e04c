"""Batch predict: a CSV body of any length in, a CSV of predictions out, in bounded memory.

The request body is read and predicted a chunk of rows at a time (``CHUNK_ROWS``), each
chunk vectorised under ``inference_mode``; the answer's lines go to a temporary file as
they are made, and the file is sent once the whole body was read. So:

- memory depends on the chunk size, not on the number of rows; disk holds the answer
  (about 20 bytes per class and row) until it is sent;
- every bad cell, even on row 700,000, is a 400 naming its row and column before any
  byte of the answer is sent: a client never gets half an answer that looks whole;
- a client that sends its whole body before it reads the answer (requests, httpx,
  http.client, curl alike) cannot deadlock against a server already writing an answer
  it does not read.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import pandas as pd

from service.db.session import Database
from service.ml.batch import read_csv_chunks, write_header, write_predictions
from service.usecases import models

CHUNK_ROWS = 20_000


@dataclass(frozen=True)
class CsvLimits:
    """The request limits batch predict enforces while it reads."""

    max_rows: int
    max_columns: int
    max_cell_chars: int

    def chunks(self, stream: BinaryIO) -> Iterator[pd.DataFrame]:
        """The CSV ``stream``'s rows, ``CHUNK_ROWS`` at a time, within these limits."""
        return read_csv_chunks(
            stream,
            chunk_rows=CHUNK_ROWS,
            max_rows=self.max_rows,
            max_columns=self.max_columns,
            max_cell_chars=self.max_cell_chars,
        )


@dataclass
class CsvPrediction:
    """The version that answered and its CSV answer, a temporary file positioned at 0."""

    name: str
    version: int
    rows: int
    size: int
    body: BinaryIO
    ignored: tuple[str, ...] = ()  # columns read and not used (the model's target)


def predict_csv(
    db: Database,
    cache: models.ModelCache,
    tenant: str,
    name: str,
    version: int | None,
    stream: BinaryIO,
    limits: CsvLimits,
) -> CsvPrediction:
    """Predict every row of the CSV ``stream``; ``version`` ``None`` is the latest.

    Raises the same errors as the JSON predict (an unknown model, column or bad cell)
    before any of the answer exists; the temporary file is removed on every error.
    """
    found = models.resolve_version(db, cache, tenant, name, version)
    bundle = models.loaded(db, cache, found)
    body = tempfile.TemporaryFile()
    try:
        text = io.TextIOWrapper(body, encoding="utf-8", newline="")
        write_header(text, bundle.classes)
        rows = 0
        ignored: tuple[str, ...] = ()
        for chunk in limits.chunks(stream):
            chunk, ignored = models.without_target(chunk, found.target)
            write_predictions(text, bundle.classes, bundle.predict_proba(chunk))
            rows += len(chunk)
        text.flush()
        text.detach()
        size = body.tell()
        body.seek(0)
    except BaseException:
        body.close()
        raise
    return CsvPrediction(found.name, found.version, rows, size, body, ignored)
