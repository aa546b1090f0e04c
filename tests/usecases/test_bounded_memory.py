"""A table larger than a process may hold is uploaded and trained on all the same.

The child process gets a data-segment limit (RLIMIT_DATA: since Linux 4.7 it bounds a
process's anonymous private memory, what RssAnon measures, and not file-backed maps) of
1 GiB, 700 MiB above what importing torch, pandas and the service takes. It streams a
1.5M-row CSV of 117 MB into storage and trains one epoch on it: the whole-file code this
replaced held the body, its text and a frame of 15M Python strings at once, and died
with MemoryError under the same limit (measured: bench/README.md).
"""

import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

LIMIT = 1024**3
ROWS = 1_500_000

CHILD = textwrap.dedent(
    """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_DATA, ({limit}, {limit}))
    from service.config import Settings
    from service.db.session import Database
    from service.usecases import datasets, jobs
    from service.usecases.training import run_training

    settings = Settings.from_env(
        {{}}, database_url={url!r}, broker_url="memory://", auth="off", cache_dir={cache!r}
    )
    db = Database.of(settings)

    class Nowhere:
        def publish(self, job_id):
            pass

    with open({csv!r}, "rb") as source:
        table = datasets.TableUpload("big", source)
        dataset = datasets.upload_dataset(db, settings, "default", table)
    assert dataset.n_rows == {rows}, dataset.n_rows
    request = jobs.JobRequest(
        target="label",
        model_name="big",
        hyperparameters={{"epochs": 1, "batch_size": 4096, "hidden_layers": [32]}},
        dataset_id=dataset.id,
    )
    job = jobs.submit_job(db, settings, Nowhere(), "default", request)
    print("outcome", run_training(db, settings, job.id, "bounded"))
    status = open("/proc/self/status").read()
    print([line for line in status.splitlines() if line.startswith(("VmData", "VmHWM"))])
    """
)


def _table_csv(path) -> None:
    rng = np.random.default_rng(0)
    columns = {f"x{i}": rng.normal(size=ROWS).round(5) for i in range(8)}
    columns["colour"] = rng.choice(np.array(["red", "green", "blue", "grey"]), ROWS)
    score = columns["x0"] + columns["x1"] - columns["x2"]
    columns["label"] = np.array(["a", "b", "c"])[np.digitize(score, [-0.7, 0.7])]
    pacsv.write_csv(pa.table(columns), path)


def test_a_table_larger_than_the_memory_limit_is_uploaded_and_trained(database_url, tmp_path):
    csv = tmp_path / "big.csv"
    _table_csv(csv)
    assert csv.stat().st_size > 110 * 1024**2
    code = CHILD.format(
        limit=LIMIT, url=database_url, cache=str(tmp_path / "cache"), csv=str(csv), rows=ROWS
    )
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert "outcome succeeded" in child.stdout, child.stdout + child.stderr[-3000:]
