"""The worker's file cache: built once and reused, LRU-bounded, shared by processes; and the
streamed encoding that fills it equals the in-memory preparation."""

import dataclasses
import io
import multiprocessing
import os
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from service.ml.cache import FileCache
from service.ml.pipeline import encode_file, load_encoded, prepare
from service.ml.tabular import infer_columns, read_csv, to_parquet
from tests.support.data import mixed_csv


def _writer(size: int, log: Path | None = None):
    def build(directory: Path) -> None:
        if log is not None:
            with open(log, "a") as out:
                out.write(f"{os.getpid()}\n")
        (directory / "data.bin").write_bytes(b"x" * size)

    return build


def test_an_entry_is_built_once_and_reused(tmp_path):
    cache = FileCache(tmp_path / "c", max_bytes=10_000)
    log = tmp_path / "builds"
    for _ in range(3):
        with cache.entry("a", _writer(100, log)) as path:
            assert (path / "data.bin").read_bytes() == b"x" * 100
    assert len(log.read_text().splitlines()) == 1


def test_least_recently_used_entries_are_evicted_past_the_bound(tmp_path):
    cache = FileCache(tmp_path / "c", max_bytes=2_500)
    for key in ("a", "b"):
        with cache.entry(key, _writer(1000)):
            pass
        time.sleep(0.02)
    with cache.entry("a", _writer(1000)):  # a is used again: b is now the oldest
        pass
    time.sleep(0.02)
    with cache.entry("c", _writer(1000)):
        pass
    assert cache.keys() == ["a", "c"] and cache.size() <= 2_500


def test_an_entry_in_use_is_not_evicted(tmp_path):
    cache = FileCache(tmp_path / "c", max_bytes=1_500)
    with cache.entry("a", _writer(1000)) as held:
        with cache.entry("b", _writer(1000)):
            pass
        assert (held / "data.bin").exists()  # a is held: b's build could not evict it
    assert "a" in cache.keys()


def test_a_failed_build_leaves_nothing(tmp_path):
    cache = FileCache(tmp_path / "c", max_bytes=10_000)

    def broken(directory: Path) -> None:
        (directory / "half").write_bytes(b"...")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError), cache.entry("a", broken):
        pass
    assert cache.keys() == [] and [p for p in (tmp_path / "c").iterdir() if p.is_dir()] == []


def _build_shared(root: str, log: str, barrier) -> None:
    barrier.wait()
    cache = FileCache(root, max_bytes=10**9)

    def slow(directory: Path) -> None:
        with open(log, "a") as out:
            out.write(f"{os.getpid()}\n")
        time.sleep(0.5)  # the other process arrives while this one builds
        (directory / "data.bin").write_bytes(b"y" * 1000)

    with cache.entry("shared", slow) as path:
        assert (path / "data.bin").read_bytes() == b"y" * 1000


def test_two_processes_sharing_one_directory_build_an_entry_once(tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    log = tmp_path / "builds"
    workers = [
        context.Process(target=_build_shared, args=(str(tmp_path / "c"), str(log), barrier))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert len(log.read_text().splitlines()) == 1


@pytest.mark.parametrize("scaling", ["standard", "quantile"])
def test_the_streamed_encoding_equals_the_in_memory_preparation(tmp_path, scaling):
    frame, columns = infer_columns(read_csv(mixed_csv(3000), max_rows=10**6, max_columns=10))
    path = tmp_path / "t.parquet"
    # Small row groups, so every pass crosses many of them.
    pq.write_table(pq.read_table(io.BytesIO(to_parquet(frame))), path, row_group_size=256)
    types = {c.name: c.type for c in columns if c.name != "species"}
    types["flag"] = "categorical"  # an override is converted the same way in both
    in_memory = prepare(frame, "species", types, validation_fraction=0.2, seed=7, scaling=scaling)
    encode_file(
        path, "species", types, tmp_path / "out", validation_fraction=0.2, seed=7,
        scaling=scaling,
    )  # fmt: skip
    mapped = load_encoded(tmp_path / "out")
    for a, b in zip(mapped.encoder.columns, in_memory.encoder.columns, strict=True):
        # The same fit; sums over row groups round differently in the last bits.
        assert dataclasses.replace(a, mean=None, std=None) == dataclasses.replace(
            b, mean=None, std=None
        )
        if b.mean is not None:
            assert (a.mean, a.std) == pytest.approx((b.mean, b.std), rel=1e-9)
    assert mapped.labels == in_memory.labels
    for name in ("y_train", "y_val"):
        assert torch.equal(getattr(mapped, name), getattr(in_memory, name)), name
    for name in ("x_train", "x_val"):
        assert torch.allclose(getattr(mapped, name), getattr(in_memory, name), atol=1e-6), name
    assert mapped.dropped_rows == in_memory.dropped_rows
