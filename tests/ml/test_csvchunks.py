"""A CSV body cut into line-aligned chunks, parsed by several threads, results in order."""

import io
import threading
import time

import pyarrow.parquet as pq
import pytest

from service.ml import DataError, csvchunks, ingest
from service.ml.csvchunks import line_cut, parsed_chunks


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch):
    monkeypatch.setattr(csvchunks, "CHUNK_BYTES", 64)
    monkeypatch.setattr(csvchunks, "READ_BYTES", 16)


def test_a_chunk_ends_at_the_last_line_end_outside_quotes():
    assert line_cut(b"a,b\n1,2\n3,") == 8
    assert line_cut(b'a,b\n1,"x\ny"\n3,') == 12  # the quoted line break is no end
    assert line_cut(b'a,"x\ny') == 0  # the only line end is inside quotes
    assert line_cut(b'1,"say ""hi""\n"\n2') == 16  # doubled quotes keep the count even
    assert line_cut(b"no line end") == 0


def test_a_cut_from_a_known_quote_count_is_the_same_cut():
    for data in (
        b"a,b\n1,2\n3,",
        b'a,b\n1,"x\ny"\n3,',
        b'a,"x\ny',
        b'1,"say ""hi""\n"\n2',
        b'"a"\n"b\n\nc"\n"d',
        b"no line end",
    ):
        assert line_cut(data, quotes=data.count(b'"')) == line_cut(data)
        padded = bytearray(data + b'"\n' * 5)  # only the first len(data) bytes count
        assert line_cut(padded, len(data), data.count(b'"')) == line_cut(data)


def test_quoted_line_breaks_are_never_cut_whether_the_stream_counts_quotes_or_not():
    rows = [b'%d,"text %d\nover %s lines"\n' % (i, i, b"\n" * (i % 3)) for i in range(500)]
    body = b"".join(rows)

    class Counting(io.BytesIO):
        quotes = 0

        def read(self, size=-1):
            data = super().read(size)
            self.quotes += data.count(b'"')
            return data

    def parse(chunk):
        data = bytes(chunk)
        assert data.count(b'"') % 2 == 0 and data.endswith(b'"\n')
        return [data]

    for counted in (False, True):
        stream = Counting(body)
        quotes = (lambda s=stream: s.quotes) if counted else None
        out = list(parsed_chunks(stream, b"", parse, len, lambda e, c, r: e, quotes=quotes))
        assert b"".join(chunk for chunks in out for chunk in chunks) == body
        assert len(out) > 20


def test_a_guarded_body_read_into_the_buffers_is_cut_outside_quotes():
    """The ingest path: the guarded stream fills the reader's buffer in place (``fill``)
    and its guard counts the quotes; quoted line breaks cross the chunks' boundaries, and
    a quoted value longer than a chunk makes the buffer grow."""
    rows = [b'%d,"text %d\nover %s lines"\n' % (i, i, b"\n" * (i % 3)) for i in range(500)]
    rows[250] = b'250,"' + b"long\n" * 40 + b'"\n'  # 200 bytes: over a 64-byte chunk
    body = b"".join(rows)
    stream = ingest._Guarded(ingest._Recorded(io.BytesIO(body), remember=False))
    reads = []
    fill = stream.fill

    def counted(buffer, start, end):
        reads.append(end - start)
        return fill(buffer, start, end)

    stream.fill = counted

    def parse(chunk):
        data = bytes(chunk)
        assert data.count(b'"') % 2 == 0 and data.endswith(b'"\n')
        return [data]

    out = list(
        parsed_chunks(
            stream, b"", parse, len, lambda e, c, r: e, quotes=lambda: stream.guard.quotes
        )
    )
    assert b"".join(chunk for chunks in out for chunk in chunks) == body
    assert len(out) > 20 and set(reads) == {csvchunks.READ_BYTES}
    assert stream.guard.quotes == body.count(b'"')


def _lines(text: bytes) -> list[bytes]:
    return [line for line in text.split(b"\n") if line]


def test_every_line_once_and_in_order_whatever_the_threads():
    body = b"".join(b"%d,%s\n" % (i, b"x" * (i % 7)) for i in range(2000))

    def slow_parse(chunk):
        time.sleep(0.002 * (len(chunk) % 3))  # chunks finish out of order
        return _lines(bytes(chunk))

    out = list(parsed_chunks(io.BytesIO(body), b"", slow_parse, len, lambda e, c, r: e, parsers=3))
    assert [line for lines in out for line in lines] == _lines(body)
    assert len(out) > 20


def test_the_first_error_by_position_wins_and_names_the_rows_before():
    body = b"".join(b"%d\n" % i for i in range(200))

    class Refused(Exception):
        pass

    class Stream(io.BytesIO):
        def read(self, size=-1):
            if self.tell() > 400:
                raise Refused("a byte refused by the guard")
            return super().read(size)

    def parse(chunk):
        lines = _lines(bytes(chunk))
        if b"150" in lines:
            raise ValueError("150")
        return lines

    seen, errors = [], []

    def error(exc, chunk, rows_before):
        errors.append(rows_before)
        return RuntimeError(f"after {rows_before}")

    with pytest.raises(Refused):  # the stream's error at ~byte 400 comes before line 150
        for lines in parsed_chunks(Stream(body), b"", parse, len, error):
            seen.extend(lines)
    assert seen == _lines(body)[: len(seen)] and 100 < len(seen) < 150
    with pytest.raises(RuntimeError, match=r"after \d+"):
        for _ in parsed_chunks(io.BytesIO(body), b"", parse, len, error):
            pass
    assert errors and errors[0] < 150 <= errors[0] + 64


def test_leaving_early_stops_the_reader_and_the_parsers():
    before = threading.active_count()
    body = b"".join(b"%d\n" % i for i in range(100_000))
    chunks = parsed_chunks(io.BytesIO(body), b"", bytes, len, lambda e, c, r: e)
    next(chunks)
    chunks.close()
    assert threading.active_count() == before


def test_a_quoted_line_break_across_a_chunk_boundary_is_one_value():
    rows = [f'{i},"line\nbreak {i}"' for i in range(300)]
    data = ("n,text\n" + "\n".join(rows) + "\n").encode()
    sink = io.BytesIO()
    limits = ingest.Limits(max_rows=1000, max_columns=10)
    out = ingest.ingest(io.BytesIO(data), sink, fmt="csv", limits=limits)
    stored = pq.read_table(io.BytesIO(sink.getvalue()))
    assert out.n_rows == 300
    assert stored.column("text").to_pylist() == [f"line\nbreak {i}" for i in range(300)]


def test_a_bad_value_in_a_later_chunk_names_its_row(monkeypatch):
    monkeypatch.setattr(ingest, "INFER_BYTES", 256)  # x: numeric from the first rows
    rows = [f"{i},{i * 0.5}" for i in range(1, 400)]
    rows[300] = "301,oops"
    data = ("n,x\n" + "\n".join(rows) + "\n").encode()
    with pytest.raises(DataError) as error:
        ingest.ingest(io.BytesIO(data), io.BytesIO(), fmt="csv", limits=ingest.Limits(1000, 10))
    assert "row 301 has 'oops'" in str(error.value) and error.value.field == "x"


def test_a_large_prefix_is_parsed_at_once_as_the_first_chunk(monkeypatch):
    monkeypatch.setattr(csvchunks, "FIRST_CHUNK_BYTES", 32)
    prefix = b'1,"a\nb"\n2,c\n3,d\n4,e\n5,f\n6,g\n7,h\n8,i\n9,'  # ends inside a line
    rest = b"j\n" + b"".join(b"%d,k\n" % i for i in range(10, 100))
    started = threading.Event()

    class Waiting(io.BytesIO):
        def read(self, size=-1):
            assert started.wait(5), "the prefix waited for the stream"
            return super().read(size)

    def parse(chunk):
        started.set()
        return [bytes(chunk)]

    body = prefix + rest
    out = list(parsed_chunks(Waiting(rest), prefix, parse, len, lambda e, c, r: e))
    assert out[0] == [prefix[: prefix.rfind(b"\n") + 1]]
    assert b"".join(chunk for chunks in out for chunk in chunks) == body
