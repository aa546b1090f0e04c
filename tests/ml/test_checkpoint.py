"""A trainer restored from a checkpoint continues exactly like an uninterrupted one."""

import json

import pytest
import torch

from service.ml.training import TrainingConfig
from tests.support.ml import mixed_prepared, resumed_after


def metrics(records):
    return [(r.epoch, r.train_loss, r.val_loss, r.val_accuracy, r.learning_rate) for r in records]


@pytest.mark.parametrize(
    "config",
    [
        TrainingConfig(epochs=8, seed=1, dropout=0.3),
        TrainingConfig(epochs=8, seed=2, optimizer="sgd", lr_scheduler="step", lr_step_size=2),
        TrainingConfig(epochs=8, seed=3, optimizer="adamw", lr_scheduler="cosine"),
        TrainingConfig(
            epochs=8, seed=4, lr_scheduler="reduce_on_plateau", early_stopping_patience=50
        ),
    ],
    ids=["adam-dropout", "sgd-step", "adamw-cosine", "plateau-early-stopping"],
)
def test_resume_from_a_checkpoint_is_identical_to_an_uninterrupted_run(config):
    data = mixed_prepared()
    uninterrupted = data.trainer(config)
    expected = metrics(uninterrupted.fit())
    _, expected_state = uninterrupted.final_state()

    head, resumed = resumed_after(data, config, 3)
    tail = list(resumed.fit())
    assert [r.epoch for r in tail] == [4, 5, 6, 7, 8]
    assert metrics(head + tail) == expected
    _, state_after = resumed.final_state()
    for name, tensor in expected_state.items():
        assert torch.equal(tensor, state_after[name]), name


def test_a_checkpoint_is_strict_json_and_safetensors():
    trainer = mixed_prepared().trainer(TrainingConfig(epochs=1, lr_scheduler="reduce_on_plateau"))
    list(trainer.fit())
    tensors, state = trainer.checkpoint()
    json.dumps(state, allow_nan=False)
    assert tensors[:8] != b"\x80\x04\x95"  # not a pickle
    assert state["epoch"] == 1
