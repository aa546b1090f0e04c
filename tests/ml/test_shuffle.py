"""How an epoch is shuffled: row by row within one window, in blocks of rows beyond it
(issue 12); and the stratified split drawn chunk by chunk."""

import json
import math

import numpy as np
import pytest
import torch

from service.ml import preprocessing
from service.ml.preprocessing import stratified_split, validation_mask
from service.ml.training import TrainingConfig
from tests.support.ml import mixed_prepared


def block_trainer(data, config, block=8, window=64):
    """A trainer whose training split (240 rows) spans several windows of blocks."""
    trainer = data.trainer(config)
    trainer.shuffle_block, trainer.shuffle_window = block, window
    return trainer


def orders(trainer, epochs=3):
    return [torch.cat(list(trainer._epoch_order())) for _ in range(epochs)]


def metrics(records):
    return [(r.epoch, r.train_loss, r.val_loss, r.val_accuracy, r.learning_rate) for r in records]


@pytest.mark.parametrize("block,window", [(8, 64), (7, 50), (64, 64), (1, 16)])
def test_each_epoch_visits_every_row_once_in_a_new_order(block, window):
    data = mixed_prepared()
    trainer = block_trainer(data, TrainingConfig(seed=3), block, window)
    n = len(data.y_train)
    assert n > window
    epochs = orders(trainer)
    for order in epochs:
        assert sorted(order.tolist()) == list(range(n))
    assert not torch.equal(epochs[0], epochs[1])
    # Each window's rows come from whole blocks (the last block may be short).
    windows = list(block_trainer(data, TrainingConfig(seed=3), block, window)._epoch_order())
    for rows in windows:
        blocks = torch.unique(rows // block)
        assert len(rows) == sum(min(block, n - b * block) for b in blocks.tolist())
    n_blocks = math.ceil(n / block)
    assert len(windows) == math.ceil(n_blocks / max(1, window // block))


def test_a_table_within_one_window_is_permuted_row_by_row_as_before():
    data = mixed_prepared()
    trainer = data.trainer(TrainingConfig(seed=3))
    generator = torch.Generator().manual_seed(3)
    assert [w.tolist() for w in trainer._epoch_order()] == [
        torch.randperm(len(data.y_train), generator=generator).tolist()
    ]


def test_block_shuffling_is_seeded_and_resumes_identically():
    data = mixed_prepared()
    config = TrainingConfig(epochs=6, seed=5, batch_size=16, dropout=0.2)
    first = block_trainer(data, config)
    expected = metrics(first.fit())
    _, expected_state = first.final_state()
    assert metrics(block_trainer(data, config).fit()) == expected

    interrupted, head = block_trainer(data, config), []
    for record in interrupted.fit():
        head.append(record)
        if record.epoch == 2:
            break
    tensors, state = interrupted.checkpoint()
    torch.manual_seed(999)  # a new process's RNG state
    resumed = block_trainer(data, config)
    resumed.restore(tensors, json.loads(json.dumps(state)))
    assert metrics(head + list(resumed.fit())) == expected
    _, state_after = resumed.final_state()
    for name, tensor in expected_state.items():
        assert torch.equal(tensor, state_after[name]), name


def test_batches_are_full_across_windows():
    """Windows need not hold whole batches: a window's leftover rows lead the next one's,
    so every batch but the epoch's last has ``batch_size`` rows."""
    data = mixed_prepared()
    trainer = block_trainer(data, TrainingConfig(seed=1, batch_size=25), block=7, window=50)
    sizes = []

    def step(xb, yb):
        sizes.append(len(yb))
        return torch.zeros(()), torch.zeros((), dtype=torch.int64)

    trainer.train_step = step
    assert trainer.run_epoch(lambda: False) is not None
    n = len(data.y_train)
    assert sizes == [25] * (n // 25) + ([n % 25] if n % 25 else [])


def _split_before_issue_12(codes, fraction, seed):
    """The split as every version before the bounded-memory worker drew it (4ee908c)."""
    rng = np.random.default_rng(seed)
    validation = []
    for code in np.unique(codes):
        rows = rng.permutation(np.flatnonzero(codes == code))
        n_val = int(round(fraction * len(rows)))
        n_val = min(max(n_val, 1), len(rows) - 1) if len(rows) >= 2 else 0
        validation.append(rows[:n_val])
    return np.sort(np.concatenate(validation))


def test_the_validation_mask_is_the_split_earlier_versions_drew_whatever_the_chunking(
    monkeypatch, tmp_path
):
    """A job checkpointed by an earlier version resumes on the same validation rows."""
    rng = np.random.default_rng(0)
    codes = rng.choice(4, size=5000, p=[0.7, 0.2, 0.099, 0.001])
    codes[:3] = 3  # a rare class of a few rows
    codes[3] = 5  # a class of one row (and code 4 absent)
    counts = np.bincount(codes)
    before = _split_before_issue_12(codes, 0.2, seed=4)
    for chunk in (1 << 16, 997, 64):
        monkeypatch.setattr(preprocessing, "SPLIT_CHUNK", chunk)
        for scratch in (None, tmp_path):
            mask = validation_mask(codes, 0.2, seed=4, scratch=scratch)
            assert np.flatnonzero(mask).tolist() == before.tolist()
            per_class = np.bincount(codes[mask], minlength=len(counts))
            expected = [min(max(round(0.2 * c), 1), c - 1) if c >= 2 else 0 for c in counts]
            assert per_class.tolist() == expected
        assert not (mask == validation_mask(codes, 0.2, seed=5)).all()
        assert list(tmp_path.iterdir()) == []  # the working file is gone
    position = np.flatnonzero(mask & (codes == 0)).mean() / len(codes)
    assert 0.4 < position < 0.6


def test_the_validation_mask_fills_a_memory_map(tmp_path):
    codes = np.memmap(tmp_path / "codes", np.int64, "w+", shape=(3000,))
    codes[:] = np.arange(3000) % 3
    out = np.memmap(tmp_path / "mask", np.bool_, "w+", shape=(3000,))
    validation_mask(codes, 0.1, seed=2, out=out)
    train, val = stratified_split(np.asarray(codes), 0.1, seed=2)
    assert np.flatnonzero(out).tolist() == val.tolist()
    assert len(train) == 2700 and np.bincount(codes[val]).tolist() == [100, 100, 100]


def test_a_batch_holds_its_rows_features_and_classes_for_one_network_and_for_bagging():
    """Batches are gathered a row at a time (``index_select``): the values advanced
    indexing gave, for one index row and for bagging's ``(members, rows)``."""
    data = mixed_prepared()
    trainer = data.trainer(TrainingConfig(seed=2))
    index = torch.tensor([5, 0, 17, 5, len(data.y_train) - 2])
    x, y = trainer._batch(index)
    assert torch.equal(x, data.x_train[index]) and torch.equal(y, data.y_train[index])
    members = torch.stack([index, index.flip(0), index + 1])
    x, y = trainer._batch(members)
    assert x.shape == (3, 5, data.x_train.shape[1]) and y.shape == (3, 5)
    assert torch.equal(x, data.x_train[members]) and torch.equal(y, data.y_train[members])
