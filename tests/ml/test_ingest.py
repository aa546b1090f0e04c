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
