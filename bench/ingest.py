"""An upload's parse, checks, summaries and Parquet write in one process, against
``pyarrow.csv.read_csv`` of the same file, alternating: wall and CPU seconds.

The HTTP path (``bench/scale.py``) adds the body's reading and the storage's writes;
this isolates ``service.ml.ingest`` so that a change to it is measured without them.
CPU seconds are the whole process's (every thread), so MB per CPU-second says what the
upload costs whatever the machine's load.

    python bench/ingest.py FILE.csv [--repeat 3]

``bench/scale.py`` makes such a file (``make_csv``): ``python -c "from pathlib import
Path; from bench.scale import make_csv; make_csv(Path('/tmp/t.csv'), 1_000_000)"``.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import sys
import time
from pathlib import Path

import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.ml import ingest  # noqa: E402


class _Discard(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return len(data)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(run) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), _cpu()
    run()
    return time.perf_counter() - wall, _cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = args.file.stat().st_size / 1e6
    limits = ingest.Limits(max_rows=10**10, max_columns=10_000)

    def upload() -> None:
        with open(args.file, "rb") as source:
            ingest.ingest(source, _Discard(), fmt="csv", limits=limits)

    for _ in range(args.repeat):
        read_wall, read_cpu = _timed(lambda: pacsv.read_csv(args.file))
        wall, cpu = _timed(upload)
        print(
            f"read_csv {size / read_wall:6.1f} MB/s ({read_cpu:.2f} CPU-s, "
            f"{size / read_cpu:.0f} MB/CPU-s) | ingest {size / wall:6.1f} MB/s ({cpu:.2f} "
            f"CPU-s, {size / cpu:.0f} MB/CPU-s) | {read_wall / wall:.2f}x read_csv | "
            f"load {os.getloadavg()[0]:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
