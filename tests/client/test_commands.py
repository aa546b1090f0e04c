"""`trainserve train/predict/jobs/models/metrics` against the app on a real port."""

from __future__ import annotations

import csv
import gzip
import io
import json
import socket

import pyarrow as pa
import pytest

from service.cli import main
from tests.support.data import mixed_csv
from trainserve_client.formatting import ProgressBar


@pytest.fixture
def flowers(tmp_path):
    path = tmp_path / "flowers.csv"
    path.write_bytes(mixed_csv(120))
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def trained(live, flowers, capsys):
    code, out, err = run(
        capsys, "train", str(flowers), "--target", "species", "--epochs", "3",
        "--hidden-layers", "16", "--early-stopping-patience", "none", "--wait", "--url", live.url,
    )  # fmt: skip
    assert code == 0, err
    return out, err


def test_train_wait_shows_each_epoch_and_prints_the_model_version(live, trained):
    out, err = trained
    assert out == "model flowers version 1\n"
    lines = err.splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    # stderr is not a terminal here: one line per epoch, each with loss, accuracy and ETA.
    assert [line.split()[1] for line in epochs] == ["1/3", "2/3", "3/3"]
    for line in epochs:
        assert "loss " in line and "val_acc " in line and "ETA " in line
    assert epochs[-1].endswith("ETA 0:00")
    assert lines[-1].startswith("succeeded after 3 epochs; the model keeps epoch ")
    assert "val_loss " in lines[-1] and "val_accuracy " in lines[-1]
    job = live.app.test_client().get("/v1/jobs").get_json()[0]
    assert job["hyperparameters"]["hidden_layers"] == [16] and job["epochs"] == 3
    assert job["hyperparameters"]["early_stopping_patience"] is None


def test_train_without_wait_prints_the_job_id(live, flowers, capsys):
    code, out, err = run(
        capsys, "train", str(flowers), "--target", "species", "--model-name", "other",
        "--features", "x1,colour", "--column-types", '{"x1": "categorical"}', "--epochs", "2",
        "--batch-norm", "--class-weight", "balanced", "--url", live.url,
    )  # fmt: skip
    assert code == 0, err
    job = live.app.test_client().get(f"/v1/jobs/{out.strip()}").get_json()
    assert job["model_name"] == "other" and job["features"] == ["x1", "colour"]
    assert job["hyperparameters"]["batch_norm"] is True
    assert job["hyperparameters"]["class_weight"] == "balanced"
    assert f"/v1/jobs/{job['id']}/events" in err


def test_predict_writes_label_and_probabilities_per_row(live, trained, flowers, tmp_path, capsys):
    # The training file itself: the model's target column is left out, with a note.
    code, out, err = run(
        capsys, "predict", "flowers", str(flowers), "-o", str(tmp_path / "out.csv"),
        "--url", live.url,
    )  # fmt: skip
    assert code == 0, err
    assert out == ""
    assert "leaving out 'species'" in err
    assert "120 predictions of flowers version 1 written to" in err
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out.csv").read_text())))
    assert list(rows[0]) == ["label", "p_setosa", "p_versicolor", "p_virginica"]
    assert len(rows) == 120
    for row in rows:
        assert sum(float(row[f"p_{c}"]) for c in ("setosa", "versicolor", "virginica")) == (
            pytest.approx(1.0)
        )
    # Without -o the CSV goes to stdout.
    code, out, err = run(
        capsys, "predict", "flowers", str(flowers), "--version", "1", "--url", live.url
    )
    assert code == 0 and out == (tmp_path / "out.csv").read_text()


def test_jobs_models_and_metrics_tables(live, trained, capsys):
    job_id = live.app.test_client().get("/v1/jobs").get_json()[0]["id"]
    code, out, _ = run(capsys, "jobs", "--url", live.url)
    header, row = out.splitlines()
    assert header.split()[:5] == ["ID", "STATUS", "MODEL", "EPOCH", "VAL_ACC"]
    assert row.split()[:5] == [job_id, "succeeded", "flowers", "v1", "3/3"]
    code, out, _ = run(capsys, "models", "--url", live.url)
    assert [line.split()[:3] for line in out.splitlines()] == [
        ["NAME", "LATEST", "VERSIONS"],
        ["flowers", "1", "1"],
    ]
    code, out, _ = run(capsys, "metrics", job_id, "--url", live.url)
    lines = out.splitlines()
    assert lines[0].split() == [
        "EPOCH", "TRAIN_LOSS", "TRAIN_ACC", "VAL_LOSS", "VAL_ACC", "LR", "SECONDS"
    ]  # fmt: skip
    assert [line.split()[0] for line in lines[1:]] == ["1", "2", "3"]


def test_server_errors_are_one_line_on_stderr_and_exit_1(live, flowers, capsys):
    code, out, err = run(capsys, "predict", "nope", str(flowers), "--url", live.url)
    assert (code, out) == (1, "")
    assert err == "trainserve: 404 Not Found: no model named 'nope'\n"
    code, out, err = run(
        capsys, "train", str(flowers), "--target", "species", "--epochs", "0", "--url", live.url
    )
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("trainserve: 400 Bad Request: hyperparameters.epochs: ")
    code, _, err = run(capsys, "metrics", "nope", "--url", live.url)
    assert code == 1 and err == "trainserve: 404 Not Found: no job with id 'nope'\n"


def test_a_refused_connection_and_a_missing_file_are_one_line(capsys, tmp_path, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("TRAINSERVE_URL", f"http://127.0.0.1:{port}")
    code, _, err = run(capsys, "jobs")
    assert code == 1
    assert err == (
        f"trainserve: cannot reach http://127.0.0.1:{port}: connection refused "
        "(is the server running?)\n"
    )
    code, _, err = run(capsys, "train", str(tmp_path / "absent.csv"), "--target", "y")
    assert code == 1 and err.count("\n") == 1 and "absent.csv" in err


def test_a_flag_value_of_the_wrong_kind_is_a_usage_error_saying_what_it_takes(capsys):
    for flag, value, expected in (
        (
            "--hidden-layers",
            "32,x",
            "'32,x' is not integers separated by commas (e.g. 128,64), or none",
        ),
        ("--batch-size", "big", "'big' is not an integer or 'auto', or none"),
        ("--class-weight", "{bad", "'{bad' is not 'balanced' or a JSON object, or none"),
        ("--epochs", "ten", "'ten' is not an integer, or none"),
        ("--momentum", "x", "'x' is not a number"),
    ):
        with pytest.raises(SystemExit) as usage:
            main(["train", "data.csv", "--target", "y", flag, value])
        assert usage.value.code == 2
        err = capsys.readouterr().err
        assert err.endswith(f"trainserve train: error: argument {flag}: {expected}\n"), err
        assert "lambda" not in err


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_the_bar_redraws_one_line():
    stream, now = Terminal(), [0.0]
    bar = ProgressBar(stream, 4, clock=lambda: now[0])
    bar.status({"status": "running", "epoch": 0, "epochs": 4, "attempt": 1})
    for epoch in (1, 2):
        now[0] += 4.0
        bar.epoch(
            {"epoch": epoch, "train_loss": 1 / epoch, "val_loss": 1.0, "val_accuracy": 0.5,
             "duration_s": 0.1}
        )  # fmt: skip
    assert "\n" not in stream.getvalue()
    last = stream.getvalue().split("\r")[-1]
    # 4 s per epoch watched live, 2 epochs to go.
    assert last.startswith("epoch 2/4 [############------------]") and "ETA 0:08" in last
    bar.close()
    assert stream.getvalue().endswith("\n")


def test_evaluate_prints_the_metrics_and_the_confusion_matrix(live, trained, flowers, capsys):
    code, out, err = run(capsys, "evaluate", "flowers", str(flowers), "--url", live.url)
    assert code == 0, err
    assert "flowers version 1 on" in out and "120 rows" in out
    assert "accuracy " in out and "log-loss " in out and "ECE " in out
    assert "CLASS" in out and "SUPPORT" in out and "confusion matrix" in out
    code, out, err = run(
        capsys, "evaluate", "flowers", str(flowers), "--version", "1", "--json", "--url", live.url
    )
    answer = json.loads(out)
    assert answer["rows"] == 120 and answer["model"] == {"name": "flowers", "version": 1}
    assert sum(map(sum, answer["confusion_matrix"]["counts"])) == 120
    code, out, err = run(
        capsys, "evaluate", "flowers", str(flowers), "--target", "nope", "--url", live.url
    )
    assert code != 0 and "nope" in err


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_a_compressed_file_is_predicted_and_evaluated_as_the_plain_one(
    live, trained, flowers, tmp_path, capsys, codec
):
    """predict and evaluate send a .csv.gz or .csv.zst as it is, as upload and train do:
    the same predictions and metrics as the plain file's."""
    data = flowers.read_bytes()
    packed = tmp_path / ("flowers.csv.gz" if codec == "gzip" else "flowers.csv.zst")
    packed.write_bytes(gzip.compress(data) if codec == "gzip" else pa.compress(data, "zstd"))
    answers = []
    for path in (flowers, packed):
        out = tmp_path / f"{path.name}.out"
        url = ("--url", live.url)
        code, _, err = run(capsys, "predict", "flowers", str(path), "-o", str(out), *url)
        assert code == 0, err
        assert "120 predictions of flowers version 1" in err
        # gzip's header is read here (the note about the target); zstd's is not.
        assert ("leaving out 'species'" in err) == (path == flowers or codec == "gzip")
        code, metrics, err = run(capsys, "evaluate", "flowers", str(path), "--json", *url)
        assert code == 0, err
        answers.append((out.read_text(), json.loads(metrics)))
    assert answers[0] == answers[1]
    broken = tmp_path / "broken.csv.gz"
    cut = gzip.compress(data)[:50]
    garbled = bytearray(gzip.compress(data))
    garbled[12:20] = b"\xff" * 8  # the deflate data itself: zlib.error, not OSError
    for content in (cut, bytes(garbled)):
        broken.write_bytes(content)
        code, out, err = run(capsys, "predict", "flowers", str(broken), "--url", live.url)
        assert (code, out) == (1, "") and err.count("\n") == 1 and "decompressed" in err


def test_a_non_utf8_file_to_predict_is_one_line(live, trained, tmp_path, capsys):
    latin = tmp_path / "latin.csv"
    latin.write_bytes("pétal,x\n1,2\n".encode("latin-1"))
    code, out, err = run(capsys, "predict", "flowers", str(latin), "--url", live.url)
    assert (code, out) == (1, "")
    assert err.startswith(f"trainserve: {latin} is not UTF-8 text: ") and err.count("\n") == 1
