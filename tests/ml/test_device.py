"""Devices and precision, on a machine without a GPU: what a worker offers, what a job
gets, and models and checkpoints that do not depend on where they were trained.
(bench/gpu.py checks a GPU-trained bundle against CPU predictions on a GPU machine.)"""

import pytest
import torch
from safetensors.torch import load as load_safetensors

from service.ml import MLError
from service.ml.device import describe, job_device, worker_device
from service.ml.inference import ModelBundle
from service.ml.training import TrainingConfig
from tests.support.ml import mixed_prepared, resumed_after


@pytest.fixture(scope="module")
def data():
    return mixed_prepared()


def test_worker_and_job_devices_without_cuda():
    assert not torch.cuda.is_available()  # this machine; the GPU path runs in bench/gpu.py
    assert worker_device("cpu") == "cpu"
    assert worker_device("auto") == "cpu"
    for setting in ("cuda", "cuda:1"):
        with pytest.raises(MLError, match="CUDA device"):
            worker_device(setting)
    assert job_device("cpu", "cuda:0") == torch.device("cpu")  # CPU jobs stay on the CPU
    assert job_device("gpu", "cuda:1") == torch.device("cuda:1")
    with pytest.raises(MLError):
        job_device("gpu", "cpu")
    assert describe(torch.device("cpu")) == "cpu"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_model_and_checkpoint_are_float32_cpu_tensors_whatever_the_precision(data, precision):
    config = TrainingConfig(epochs=3, seed=1, precision=precision, early_stopping_patience=None)
    trainer = data.trainer(config, torch.device("cpu"))
    records = list(trainer.fit())
    assert len(records) == 3 and records[-1].train_loss < records[0].train_loss
    _, state = trainer.final_state()
    tensors, _ = trainer.checkpoint()
    for name, tensor in [*state.items(), *load_safetensors(tensors).items()]:
        assert tensor.device.type == "cpu", name
        if tensor.is_floating_point() and not name.startswith("rng."):
            assert tensor.dtype == torch.float32, name
    # The bundle (as stored and loaded by any API process) predicts what the trainer's
    # own network predicts, in float32 without autocast.
    bundle = ModelBundle.from_state(trainer.arch, data.encoder, data.labels.classes, state)
    bundle = ModelBundle.load(bundle.describe(), bundle.weights())
    trainer.model.eval()
    with torch.inference_mode():
        expected = torch.softmax(trainer.model(data.x_val).double(), dim=1).numpy()
    got = bundle.predict_inputs(data.x_val.numpy())
    assert abs(got - expected).max() < 1e-5


def test_a_bf16_run_resumed_from_its_checkpoint_matches_an_uninterrupted_one(data):
    config = TrainingConfig(epochs=6, seed=2, dropout=0.2, precision="bf16")
    expected = [(r.epoch, r.train_loss, r.val_loss) for r in data.trainer(config).fit()]
    head, resumed = resumed_after(data, config, 3)
    got = [(r.epoch, r.train_loss, r.val_loss) for r in head + list(resumed.fit())]
    assert got == expected
