"""A job's own memory does not grow with the table's rows (issue 12).

A child process runs the worker's side of a job (``encode_file``: the split, the
statistics pass and the encoding; ``load_encoded``; one epoch of training, block-shuffled)
twice: once on a small table, so that every library has allocated what it allocates
lazily, then, under a data-segment limit (RLIMIT_DATA: anonymous private memory, not
read-only shared maps) of what it holds at that point plus 48 MiB, on a table of 6M
rows of one numeric column and a 3-class label. The job's growth fits in 24 MiB
(measured); one more int64 array with an entry per training row (labels, the split's
indices, an epoch's permutation: 38 MB at 4.8M rows) does not fit. The code before this
test held about 25 bytes a row at once and died with MemoryError in the split.
"""

import subprocess
import sys
import textwrap

ROWS = 6_000_000
MARGIN = 48 * 1024**2

CHILD = textwrap.dedent(
    """
    import resource, shutil, sys
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from service.ml.hyperparameters import TrainingConfig
    from service.ml.pipeline import encode_file, load_encoded

    torch.set_num_threads(1)
    directory = sys.argv[1]
    config = TrainingConfig.from_json(
        {{"recipe": "plain", "epochs": 1, "batch_size": 4096, "hidden_layers": [8],
          "early_stopping": False, "seed": 3}}
    )

    def table(rows):
        rng, path = np.random.default_rng(rows), f"{{directory}}/t{{rows}}.parquet"
        schema = pa.schema([("x", pa.float64()), ("label", pa.int64())])
        with pq.ParquetWriter(path, schema) as writer:
            for start in range(0, rows, 256 * 1024):
                x = rng.normal(size=min(256 * 1024, rows - start))
                label = np.digitize(x + rng.normal(scale=0.5, size=len(x)), [-0.5, 0.5])
                writer.write_table(pa.table({{"x": x, "label": label}}, schema=schema))
        return path

    def job(rows):
        out = f"{{directory}}/e{{rows}}"
        encode_file(table(rows), "label", {{"x": "numeric"}}, out, validation_fraction=0.2, seed=3)
        data = load_encoded(out)
        trainer = data.trainer(config)
        trainer.shuffle_window = 1 << 14  # blocks at the small size too
        (record,) = trainer.fit()
        return record, len(data.y_train), data.x_train.shape[1]

    job(300_000)  # more than a row group (256k rows), so its buffers are warm too
    status = open("/proc/self/status").read()
    data_kb = int(status.split("VmData:")[1].split()[0])
    limit = data_kb * 1024 + {margin}
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    record, train_rows, width = job({rows})
    print("trained", train_rows, width, record.train_accuracy, record.val_accuracy)
    """
)


def test_a_job_holds_nothing_per_row_in_its_own_memory(tmp_path):
    code = CHILD.format(rows=ROWS, margin=MARGIN)
    child = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert child.returncode == 0, child.stderr[-3000:]
    words = child.stdout.split()
    assert words[:3] == ["trained", str(ROWS - ROWS // 5), "1"], child.stdout
    assert float(words[4]) > 0.6, child.stdout  # it learned something
