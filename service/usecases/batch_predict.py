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

import tempfile
from dataclasses import dataclass
from typing import BinaryIO

from service.db.session import Database
from service.ml.batch import CsvRows, encode, header_line, prediction_lines
from service.ml.ingest import decompressed
from service.usecases import models

CHUNK_ROWS = 20_000


@dataclass(frozen=True)
class CsvLimits:
    """The request limits batch predict enforces while it reads."""

    max_rows: int
    max_columns: int
    max_cell_chars: int

    def rows(self, stream: BinaryIO, types: dict[str, str], *, field: str = "records") -> CsvRows:
        """The CSV ``stream``'s rows, ``CHUNK_ROWS`` at a time, within these limits, the
        columns of ``types`` typed (``ml.batch.CsvRows``). A gzip or zstd stream is
        decompressed as it is read (recognised by its first bytes, as uploads are); the
        row limit bounds what it may expand to."""
        return CsvRows(
            decompressed(stream, "file" if field == "file" else "body"),
            types,
            chunk_rows=CHUNK_ROWS,
            max_rows=self.max_rows,
            max_columns=self.max_columns,
            max_cell_chars=self.max_cell_chars,
            field=field,
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
        reader = limits.rows(stream, bundle.encoder.types)
        ignored = (found.target,) if found.target in reader.header else ()
        bundle.check_columns(name for name in reader.header if name not in ignored)
        body.write(header_line(bundle.classes).encode())
        rows = 0
        for batch in reader:
            probabilities = bundle.predict_inputs(encode(bundle.encoder, batch))
            body.write(prediction_lines(bundle.classes, probabilities))
            rows += batch.num_rows
        size = body.tell()
        body.seek(0)
    except BaseException:
        body.close()
        raise
    return CsvPrediction(found.name, found.version, rows, size, body, ignored)
