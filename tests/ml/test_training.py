"""The network, the epoch loop and the stored model bundle."""

import json

import numpy as np
import pytest
import torch

from service.ml import DataError
from service.ml.inference import ModelBundle
from service.ml.network import Architecture, build_mlp, count_parameters
from service.ml.tabular import frame_from_records
from service.ml.training import LR_SCHEDULERS, OPTIMIZERS, TrainingConfig
from tests.support.ml import mixed_prepared


def prepared(seed=0, rows=600):
    return mixed_prepared(rows, seed)


def test_parameter_count_matches_the_built_network():
    arch = Architecture(7, 3, (16, 8), "tanh", 0.1)
    network = build_mlp(arch)
    assert count_parameters(arch) == sum(p.numel() for p in network.parameters())


def test_a_small_table_is_learned_above_90_percent():
    data = prepared(rows=1000)
    trainer = data.trainer(TrainingConfig(seed=1))  # the defaults
    records = list(trainer.fit())
    assert [r.epoch for r in records] == list(range(1, len(records) + 1))
    best_epoch, _ = trainer.final_state()
    assert records[best_epoch - 1].val_accuracy > 0.9
    assert records[-1].train_loss < records[0].train_loss
    assert all(0 <= r.train_accuracy <= 1 and r.samples_per_s > 0 for r in records)
    for record in records:
        json.dumps(record.metrics())  # plain data


def test_same_seed_gives_identical_metrics():
    def run():
        trainer = prepared().trainer(TrainingConfig(epochs=5, seed=7, dropout=0.2))
        return [(r.train_loss, r.val_loss, r.val_accuracy) for r in trainer.fit()]

    assert run() == run()


def test_early_stopping_stops_and_keeps_the_best_epoch():
    trainer = prepared().trainer(
        TrainingConfig(epochs=200, learning_rate=0.05, early_stopping_patience=3, seed=2)
    )
    records, snapshots = [], {}
    for record in trainer.fit():
        records.append(record)
        snapshots[record.epoch] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert records[-1].stop and len(records) < 200
    best = min(records, key=lambda r: r.val_loss)
    epoch, state = trainer.final_state()
    assert epoch == best.epoch < records[-1].epoch
    for name, tensor in state.items():  # the best epoch's weights, not the last epoch's
        assert torch.equal(tensor, snapshots[best.epoch][name]), name
    assert any(not torch.equal(state[k], snapshots[records[-1].epoch][k]) for k in state)
    # The stored model scores the best epoch's validation loss.
    from service.ml.evaluation import evaluate

    trainer.model.load_state_dict(state)
    report = evaluate(trainer.model, trainer.x_val, trainer.y_val, ("a", "b", "c"))
    assert report["log_loss"] == pytest.approx(best.val_loss, rel=1e-5)


def test_should_stop_interrupts_between_batches():
    trainer = prepared().trainer(TrainingConfig(epochs=10, batch_size=8, seed=1))
    calls = []

    def stop_after_five():
        calls.append(1)
        return len(calls) > 5

    assert list(trainer.fit(should_stop=stop_after_five)) == []


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("scheduler", LR_SCHEDULERS)
def test_every_optimizer_and_scheduler_trains(optimizer, scheduler):
    config = TrainingConfig(epochs=3, optimizer=optimizer, lr_scheduler=scheduler, seed=0)
    records = list(prepared().trainer(config).fit())
    assert len(records) == 3 and all(np.isfinite(r.train_loss) for r in records)


def test_bundle_round_trip_gives_identical_probabilities_that_sum_to_one():
    data = prepared()
    trainer = data.trainer(TrainingConfig(epochs=3, seed=0))
    list(trainer.fit())
    _, state = trainer.final_state()
    bundle = ModelBundle.from_state(trainer.arch, data.encoder, data.labels.classes, state)
    loaded = ModelBundle.load(json.loads(json.dumps(bundle.describe())), bundle.weights())
    rows = frame_from_records(
        [{"x1": 0.3, "x2": -1, "colour": "red", "flag": True}, {"colour": "never-seen"}, {}],
        max_rows=10,
        max_columns=10,
    )
    p1, p2 = bundle.predict_proba(rows), loaded.predict_proba(rows)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_allclose(p1.sum(axis=1), 1.0, atol=1e-12)
    assert loaded.labels(p1)[0] in data.labels.classes


def test_one_cycle_rises_then_falls_within_the_run():
    trainer = prepared().trainer(
        TrainingConfig(
            epochs=6, lr_scheduler="one_cycle", learning_rate=0.01, early_stopping_patience=None
        )
    )
    rates = [r.learning_rate for r in trainer.fit()]
    peak = rates.index(max(rates))
    assert 0 < peak < len(rates) - 1 and max(rates) <= 0.01 + 1e-12


def test_batch_norm_gradient_clip_and_class_weights_train():
    data = prepared()
    config = TrainingConfig(
        epochs=3, batch_norm=True, gradient_clip=0.5, batch_size=7, class_weight="balanced", seed=0
    )
    trainer = data.trainer(config)
    assert any(type(m).__name__ == "BatchNorm1d" for m in trainer.model)
    assert trainer.loss_fn.weight is not None and len(trainer.loss_fn.weight) == 3
    assert len(list(trainer.fit())) == 3


def test_balanced_class_weights_are_inverse_frequencies():
    data = prepared()
    weights = data.class_weights("balanced").numpy()
    counts = np.bincount(data.y_train.numpy())
    np.testing.assert_allclose(weights * counts, len(data.y_train) / 3, rtol=1e-6)
    mapping = data.class_weights({"setosa": 3.0}).tolist()
    assert mapping == [3.0, 1.0, 1.0]
    with pytest.raises(DataError, match="not a class"):
        data.class_weights({"tulip": 2.0})


def test_min_delta_makes_small_improvements_not_count():
    loose = prepared().trainer(TrainingConfig(epochs=60, early_stopping_patience=3, seed=0))
    strict = prepared().trainer(
        TrainingConfig(epochs=60, early_stopping_patience=3, min_delta=0.05, seed=0)
    )
    assert len(list(strict.fit())) <= len(list(loose.fit()))


def test_final_evaluation_is_consistent():
    from service.ml.evaluation import evaluate

    data = prepared()
    trainer = data.trainer(TrainingConfig(epochs=5, seed=0))
    records = list(trainer.fit())
    report = evaluate(trainer.model, data.x_val, data.y_val, data.labels.classes)
    counts = np.array(report["confusion_matrix"]["counts"])
    assert counts.sum() == len(data.y_val)
    assert report["accuracy"] == pytest.approx(np.trace(counts) / counts.sum())
    assert report["accuracy"] == pytest.approx(records[-1].val_accuracy)
    assert report["log_loss"] == pytest.approx(records[-1].val_loss, rel=1e-5)
    assert set(report["per_class"]) == {"setosa", "versicolor", "virginica"}
    assert 0 <= report["macro_f1"] <= 1
