"""Streaming ingestion: parsed, checked, summarised and written by three threads, with
the results (and the first error) of one."""

import io

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from service.ml import DataError, csvchunks, ingest
from service.ml.csvcheck import CsvGuard
from service.ml.stats import TableAccumulator

LIMITS = ingest.Limits(max_rows=1_000_000, max_columns=100)


@pytest.fixture(autouse=True)
def _small_groups(monkeypatch):
    # Many groups in flight through the stages from a small table.
    monkeypatch.setattr(ingest, "ROW_GROUP_ROWS", 700)
    monkeypatch.setattr(ingest, "CHECK_ROWS", 300)
    monkeypatch.setattr(ingest, "BLOCK_BYTES", 16 * 1024)
    monkeypatch.setattr(ingest, "INFER_BYTES", 32 * 1024)
    # Many chunks parsed at once, too.
    monkeypatch.setattr(csvchunks, "CHUNK_BYTES", 16 * 1024)
    monkeypatch.setattr(csvchunks, "READ_BYTES", 4 * 1024)


def _csv(rows: int) -> bytes:
    rng = np.random.default_rng(0)
    x = rng.normal(size=rows).round(3).astype(str).astype(object)
    x[rng.random(rows) < 0.05] = ""
    word = np.array([f"w{i}" for i in rng.integers(0, 1500, rows)], dtype=object)
    flag = rng.choice(np.array(["true", "false", ""], dtype=object), rows)
    lines = ["x,word,flag,code"] + [
        f"{a},{b},{c},{i % 3}" for i, (a, b, c) in enumerate(zip(x, word, flag, strict=True))
    ]
    return ("\n".join(lines) + "\n").encode()


def test_groups_summarised_in_threads_equal_one_pass_over_the_table():
    data = _csv(10_000)
    sink = io.BytesIO()
    out = ingest.ingest(io.BytesIO(data), sink, fmt="csv", limits=LIMITS)
    stored = pq.read_table(io.BytesIO(sink.getvalue()))
    assert out.n_rows == stored.num_rows == 10_000
    assert pq.ParquetFile(io.BytesIO(sink.getvalue())).num_row_groups > 5
    table = pacsv.read_csv(
        io.BytesIO(data), convert_options=ingest.convert_options(out.types)
    ).cast(stored.schema)
    assert stored.equals(table)
    whole = TableAccumulator(out.types, count_limit=LIMITS.count_limit, quantile_capacity=0)
    whole.update(ingest.batch_frame(table))
    expected = whole.finish()
    for column in out.columns:
        facts = expected[column["name"]]
        assert (column["missing"], column["n_unique"]) == (facts.missing, facts.n_unique)
        assert column["counts"] == (facts.counts if facts.counts_exact else None)
        if column["type"] == "numeric":
            assert column["summary"] == pytest.approx(facts.summary(), rel=1e-12)
        else:
            assert column["summary"] == facts.summary()


@pytest.mark.parametrize("check_rows", [300, 100_000])
def test_the_first_bad_row_is_named_whichever_thread_finds_it(monkeypatch, check_rows):
    # 100,000: the bad value that does not parse is met before the rows before it were
    # handed to the checks.
    monkeypatch.setattr(ingest, "CHECK_ROWS", check_rows)
    lines = _csv(5000).decode().splitlines()
    lines[2500] = "inf" + lines[2500][lines[2500].index(",") :]  # the checking thread's
    lines[4000] = "oops" + lines[4000][lines[4000].index(",") :]  # the parsing thread's
    data = ("\n".join(lines) + "\n").encode()
    with pytest.raises(DataError) as error:
        ingest.ingest(io.BytesIO(data), io.BytesIO(), fmt="csv", limits=LIMITS)
    assert "row 2500" in str(error.value) and error.value.field == "x"
    del lines[2500]
    with pytest.raises(DataError) as error:
        ingest.ingest(
            io.BytesIO(("\n".join(lines) + "\n").encode()), io.BytesIO(), fmt="csv", limits=LIMITS
        )
    assert "row 3999" in str(error.value) and "'oops'" in str(error.value)


def test_the_guard_checks_a_character_cut_between_blocks():
    guard = CsvGuard()
    guard.feed("a,b\né,".encode()[:-2])  # ends inside "é"
    guard.feed(b"\xa9,\n1,2\n")
    guard.close()
    guard = CsvGuard()
    guard.feed(b"a,b\n\xc3")
    with pytest.raises(DataError, match="line 2"):
        guard.feed(b"x,1\n")  # ASCII, but the cut character never ends
    guard = CsvGuard()
    guard.feed(b"a,b\n\xc3")
    with pytest.raises(DataError):
        guard.close()


def _guarded(blocks: list[bytes], ranged: bool) -> str:
    """The guard's verdict on ``blocks`` fed as bytes, or each as a range of a larger
    buffer whose bytes around it would be refused (a NUL, a stray CR)."""
    guard = CsvGuard()
    try:
        for block in blocks:
            if ranged:
                buffer = bytearray(b"\x00\r" + block + b"\r\x00x" * 2000)
                guard.feed(buffer, 2, 2 + len(block))
            else:
                guard.feed(block)
        guard.close()
    except DataError as exc:
        return f"{exc} [{exc.field}]"
    return f"ok, {guard.quotes} quotes"


_CR = "has a carriage return (CR) that does not end a line; quote the field, or end lines "


@pytest.mark.parametrize(
    "body, verdict",
    [
        # clean: CR LF line ends, a quoted CR LF
        (b'a,b\n1,"x\r\ny"\r\n2,3\r\n' * 700, "ok, 1400 quotes"),
        (
            b"a,b\n" + b"1,2\n" * 3000 + b"3,\x00\n",
            "the CSV has a NUL byte (is it a binary file?): line 3002, column 2 ('b') [b]",
        ),
        (
            b"a,b\n" + b"1,2\n" * 3000 + b"3\r,4\n",
            f"the CSV {_CR}with LF or CR LF: line 3002, column 1 ('a') [a]",
        ),
        (
            b"a,b\n" + b"1,2\n" * 3000 + b"\xef\xbb\xbf3,4\n",
            "the CSV has a byte-order mark (U+FEFF) after the start: line 3002, column 1 ('a') [a]",
        ),
        (
            "a,b\n1,é\n".encode() * 2000 + b"2,\xff\n",
            "the CSV is not UTF-8 text (invalid byte): line 4001, column 2 ('b') [b]",
        ),
        (  # a quoted CR, then a CR at the very end
            b'a,b\n1,"x\r' + b"y" * 5000 + b'"\n2,3\r',
            f"the CSV {_CR}with LF or CR LF: line 3, column 2 ('b') [b]",
        ),
    ],
    ids=["clean", "nul", "cr", "bom", "utf8", "end-cr"],
)
def test_the_guard_checks_a_buffer_range_as_it_checks_bytes(body, verdict):
    """A chunk reader's buffer is checked in place (``feed(buffer, start, end)``): the
    same refusals, lines and columns as for bytes, whatever the blocks' boundaries (a
    CR LF or a character cut between two), and nothing outside the range counts."""
    assert _guarded([body], ranged=True) == _guarded([body], ranged=False) == verdict
    for size in (1, 7, 4096, 5000):
        blocks = [body[i : i + size] for i in range(0, len(body), size)]
        if size == 1:  # a byte at a time around the start only
            blocks = [bytes([b]) for b in body[:300]] + [body[300:]]
        assert _guarded(blocks, ranged=True) == _guarded(blocks, ranged=False), size


# Columns whose type Arrow decides, and columns it leaves to pandas (numbers Arrow's
# parse refuses, infinities, NaN spelt otherwise than the missing markers).
_TRICKY = {
    "ints": ["1", " 2", "+3", "", "NA"],
    "floats": ["1.5", "-4e2", ".5", "5.", "null"],
    "trailing_space": ["7 ", "8", "9"],
    "tab": ["7\t", "8", ""],
    "infinite": ["1", "inf", "2"],
    "nan_text": ["1", "NAN", "2"],
    "hex": ["0x10", "1", "2"],
    "underscore": ["1_000", "2", "3"],
    "booleans": ["true", "False", " TRUE", "N/A"],
    "yes_no": ["yes", "no", "true"],
    "words": ["red", " blue", "", "red"],
    "letters_of_nan": ["a", "n", "na"],
    "missing": ["", "NA", "   "],
}


@pytest.mark.parametrize("name", sorted(_TRICKY))
def test_types_from_arrow_are_the_ones_tabular_infers(name):
    """The first block's types come from Arrow where it is sure and from
    tabular.infer_columns where it is not: together the answer of infer_columns alone,
    an infinite value's error included."""
    import pandas as pd

    from service.ml.tabular import MISSING_MARKERS, infer_columns

    values = _TRICKY[name]
    sample = ingest._read_strings(("c\n" + "\n".join(values) + "\n").encode(), ["c"])
    frame = pd.DataFrame({"c": [v.lstrip(" ") for v in values]}, dtype="str")
    frame = frame.mask(frame.isin(MISSING_MARKERS))
    try:
        expected = {"c": infer_columns(frame)[1][0].type}
    except DataError as exc:
        with pytest.raises(DataError, match=str(exc).split(";")[0]):
            ingest._infer(sample, ["c"], {})
        return
    assert ingest._infer(sample, ["c"], {}) == expected
