"""The epoch loop: small named steps, and ``fit`` yielding one plain record per epoch.

The caller (the training use case) drives the generator: it decides what to do
with each record (write a database row) and may ask the loop to stop through
``should_stop``, checked between batches.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from service.ml.calibration import fit_temperature
from service.ml.checkpoint import load_checkpoint, save_checkpoint
from service.ml.device import autocast
from service.ml.hyperparameters import BY_NAME, TrainingConfig, resolve_folds
from service.ml.network import Architecture, TabularNet, build_network

OPTIMIZERS = BY_NAME["optimizer"].choices
LR_SCHEDULERS = BY_NAME["lr_scheduler"].choices
DROPOUT_SCHEDULES = BY_NAME["dropout_schedule"].choices
BEST_EPOCH_METRICS = BY_NAME["best_epoch_metric"].choices

__all__ = ["LR_SCHEDULERS", "OPTIMIZERS", "EpochRecord", "Trainer", "TrainingConfig", "to_tensors"]

# A training split larger than one window is shuffled in blocks (``Trainer._epoch_order``).
SHUFFLE_BLOCK = 64
SHUFFLE_WINDOW = 1 << 16


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch did: plain floats and ints, one database row."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    learning_rate: float
    duration_s: float
    samples_per_s: float
    stop: bool = False

    def metrics(self) -> dict:
        """The record without the control flag, for storage."""
        data = asdict(self)
        del data["stop"]
        return data


@dataclass
class Trainer:
    """Trains one network on in-memory tensors.

    Parameters
    ----------
    arch:
        The network's shape.
    config:
        The hyperparameters.
    x_train, y_train, x_val, y_val:
        float32 features and int64 class codes; the validation part may be empty.
    folds:
        For k-fold bagging: each training row's fold (0..k-1). Member *m* of the
        ensemble trains on the rows outside fold *m* and is validated on fold *m*, so the
        validation rows are the training rows, each predicted by the one member that did
        not see it (out of fold). ``None``: the validation split is separate.
    device:
        Where to train. The network is initialised on the CPU (the same weights on any
        device), then it and the four tensors move to ``device`` once, here; batches
        are cut on the device. Checkpoints and :meth:`final_state` are CPU tensors.
    shuffle_block, shuffle_window:
        How an epoch is shuffled (see ``_epoch_order``): rows per block, rows per window.
    """

    arch: Architecture
    config: TrainingConfig
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    model: nn.Module = field(init=False)
    best_epoch: int = field(init=False, default=0)
    last_epoch: int = field(init=False, default=0)

    class_weights: torch.Tensor | None = None
    folds: torch.Tensor | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # Shuffling (``_epoch_order``): rows per block, and rows per window of blocks.
    shuffle_block: int = SHUFFLE_BLOCK
    shuffle_window: int = SHUFFLE_WINDOW

    def __post_init__(self) -> None:
        torch.manual_seed(self.config.seed)
        self.model = build_network(self.arch)
        self._place()
        self.optimizer = _make_optimizer(self.model, self.config)
        self.batch_size = batch_size_for(self.config.batch_size, len(self.y_train))
        # Bagging: member m trains on the rows outside fold m, each member on batches of
        # its own rows (the same count for all, so the k batches stack into one tensor).
        self.member_rows: list[torch.Tensor] | None = None
        rows_per_epoch = len(self.y_train)
        if self.folds is not None:
            folds = self.folds.cpu()
            self.member_rows = [
                torch.nonzero(folds != m).flatten() for m in range(self.arch.ensemble_size)
            ]
            rows_per_epoch = min(len(rows) for rows in self.member_rows)
        self.rows_per_epoch = rows_per_epoch
        self.steps_per_epoch = max(1, math.ceil(rows_per_epoch / self.batch_size))
        self.scheduler = _make_scheduler(self.optimizer, self.config, self.steps_per_epoch)
        self.loss_fn = nn.CrossEntropyLoss(
            weight=self.class_weights, label_smoothing=self.config.label_smoothing
        )
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.best_loss = math.inf
        # Ties of the monitored value (equal validation accuracy) go to the lower loss.
        self.best_tiebreak = math.inf
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stale_epochs = 0
        self._final: tuple[int, dict[str, torch.Tensor]] | None = None

    def _place(self) -> None:
        """Move the network and the data to the device, once per job."""
        if self.device.type != "cpu":
            self.model.to(self.device)
            self.x_train, self.y_train, self.x_val, self.y_val = (
                t.to(self.device) for t in (self.x_train, self.y_train, self.x_val, self.y_val)
            )
            if self.class_weights is not None:
                self.class_weights = self.class_weights.to(self.device)
            if self.folds is not None:
                self.folds = self.folds.to(self.device)
        self.autocast = autocast(self.device, self.config.precision)

    @property
    def patience(self) -> int | None:
        """Epochs without improvement before stopping; ``None``: no early stopping."""
        return self.config.early_stopping_patience if self.config.early_stopping else None

    @property
    def keeps_best(self) -> bool:
        """Whether the model keeps the best epoch's weights rather than the last's: with
        early stopping, and always for the tabular network."""
        return self.patience is not None or self.arch.kind == "tabular"

    def train_step(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step on one batch.

        Returns the batch's summed loss and how many of its rows were classified right
        (by the weights before the step), as 0-d tensors on the device: reading them
        would wait for the device after every batch, so the epoch adds them up first.
        An ensemble's loss is its members' mean loss; its prediction is their mean
        probability. Bagging passes one batch per member, ``xb`` of shape ``(k, batch,
        inputs)`` and ``yb`` ``(k, batch)``: each member trains and is scored on its own.
        """
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            loss, logits = self._loss(xb, yb)
        loss.backward()
        if self.config.gradient_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.gradient_clip)
        self.optimizer.step()
        if isinstance(self.scheduler, _PER_STEP):
            self.scheduler.step()
        correct = (logits.detach().argmax(dim=-1) == yb).sum()
        return loss.detach() * yb.numel(), correct

    def _loss(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.model, TabularNet):
            members = self.model.member_logits(xb)
            k, n_classes = members.shape[0], members.shape[-1]
            if xb.dim() == 3:  # one batch per member: each scored on its own rows
                return self.loss_fn(members.reshape(-1, n_classes), yb.reshape(-1)), members
            loss = self.loss_fn(members.reshape(k * len(yb), -1), yb.repeat(k))
            return loss, self.model.combine(members.detach())
        logits = self.model(xb)
        return self.loss_fn(logits, yb), logits

    def validation_step(self) -> tuple[float | None, float | None]:
        """Loss and accuracy on the whole validation split, in large batches."""
        if len(self.y_val) == 0:
            return None, None
        self.model.eval()
        total_loss, correct = 0.0, 0
        with torch.inference_mode(), self.autocast():
            for start in range(0, len(self.y_val), 8192):
                xb = self.x_val[start : start + 8192]
                yb = self.y_val[start : start + 8192]
                if self.folds is None:
                    logits = self.model(xb).float()
                else:
                    folds = self.folds[start : start + 8192]
                    logits = out_of_fold(self.model, xb, folds).float()
                total_loss += nn.functional.cross_entropy(logits, yb, reduction="sum").item()
                correct += int((logits.argmax(dim=1) == yb).sum())
        n = len(self.y_val)
        return total_loss / n, correct / n

    def run_epoch(self, should_stop: Callable[[], bool]) -> tuple[float, float] | None:
        """Shuffle the training split and take one step per batch.

        Returns the mean training loss and the training accuracy, or ``None`` if
        ``should_stop`` interrupted the epoch.
        """
        self.model.train()
        total = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        seen = 0
        size = self.batch_size
        pending = None  # a window's last rows, short of a batch: they lead the next one
        for window in self._epoch_order():
            order = window.to(self.device)
            if pending is not None:
                order = torch.cat([pending, order], dim=-1)
            whole = order.shape[-1] // size * size
            for start in range(0, whole, size):
                if should_stop():
                    return None
                index = order[..., start : start + size]
                loss, right = self.train_step(*self._batch(index))
                total += loss
                correct += right
                seen += index.numel()
            pending = order[..., whole:] if whole < order.shape[-1] else None
        if pending is not None:
            if should_stop():
                return None
            if not (pending.shape[-1] < 2 and self.arch.batch_norm and seen):
                # (batch norm cannot normalise a batch of one row)
                loss, right = self.train_step(*self._batch(pending))
                total += loss
                correct += right
                seen += pending.numel()
        return total.item() / seen, correct.item() / seen

    def _batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The features and classes of the rows ``index`` (1-D, or ``(members, rows)``).

        ``index_select`` copies a row at a time; ``x[index]`` (advanced indexing) copies
        an element at a time, and from a table larger than the CPU's cache (a memory map
        of millions of rows) it cost 5x as much, a fifth of a training step
        (bench/README.md, job_memory.py). The same values either way.
        """
        flat = index.reshape(-1)
        x = self.x_train.index_select(0, flat).view(*index.shape, self.x_train.shape[1])
        return x, self.y_train.index_select(0, flat).view(index.shape)

    def _epoch_order(self) -> Iterator[torch.Tensor]:
        """The epoch's row indices, a window at a time, drawn by the job's own generator on
        the CPU (so the order is the same on any device, and restorable from a checkpoint).

        A training split of at most ``shuffle_window`` rows (and bagging's per-member rows)
        is permuted row by row, in one window. A larger one is shuffled in blocks: a
        permutation of its blocks of ``shuffle_block`` consecutive rows, taken
        ``shuffle_window`` rows at a time, each window's rows permuted among themselves.
        A batch then mixes rows of up to a thousand blocks from all over the table, while the
        epoch holds one entry per block (not per row) and reads the memory map a window
        of nearby pages at a time rather than one random row at a time.
        """
        generator, n = self.generator, len(self.y_train)
        if self.member_rows is not None:  # (members, rows): each member's rows, shuffled
            count = self.rows_per_epoch
            shuffled = [r[torch.randperm(len(r), generator=generator)] for r in self.member_rows]
            yield torch.stack([rows[:count] for rows in shuffled])
            return
        if n <= self.shuffle_window:
            yield torch.randperm(n, generator=generator)
            return
        block = self.shuffle_block
        blocks = torch.randperm(-(-n // block), generator=generator)
        offsets = torch.arange(block)
        per_window = max(1, self.shuffle_window // block)
        for start in range(0, len(blocks), per_window):
            chosen = blocks[start : start + per_window].sort().values
            rows = (chosen[:, None] * block + offsets).flatten()
            if chosen[-1] == len(blocks) - 1:  # the last block may be short
                rows = rows[rows < n]
            yield rows[torch.randperm(len(rows), generator=generator)]

    def fit(self, should_stop: Callable[[], bool] = lambda: False) -> Iterator[EpochRecord]:
        """Train up to epoch ``config.epochs``, yielding one record per finished epoch.

        Starts after ``last_epoch``: 1 for a new trainer, *k* + 1 for one restored from a
        checkpoint of epoch *k* (see ``checkpoint``). Early stopping
        (``early_stopping_patience``) ends the loop with a record whose ``stop`` is true,
        and :meth:`final_state` then returns the best epoch's weights.
        """
        for epoch in range(self.last_epoch + 1, self.config.epochs + 1):
            started = time.perf_counter()
            self._schedule_dropout(epoch)
            learning_rate = self.optimizer.param_groups[0]["lr"]
            with flush_denormals():
                trained = self.run_epoch(should_stop)
                train_time = time.perf_counter() - started
                val_loss, val_accuracy = (None, None) if trained is None else self.validation_step()
            if trained is None:
                return
            train_loss, train_accuracy = trained
            self._step_scheduler(val_loss if val_loss is not None else train_loss)
            stop = self._track_best(epoch, train_loss, val_loss, val_accuracy)
            self.last_epoch = epoch
            yield EpochRecord(
                epoch=epoch,
                train_loss=train_loss,
                train_accuracy=train_accuracy,
                val_loss=val_loss,
                val_accuracy=val_accuracy,
                learning_rate=learning_rate,
                duration_s=time.perf_counter() - started,
                samples_per_s=len(self.y_train) / max(train_time, 1e-9),
                stop=stop,
            )
            if stop:
                return

    def checkpoint(self) -> tuple[bytes, dict]:
        """The whole training state after the last finished epoch (see ``checkpoint``)."""
        return save_checkpoint(self)

    def restore(self, tensors: bytes | dict[str, torch.Tensor], state: dict) -> None:
        """Continue from a :meth:`checkpoint`; the next :meth:`fit` starts one epoch later."""
        load_checkpoint(self, tensors, state)

    def final_state(self) -> tuple[int, dict[str, torch.Tensor]]:
        """The weights to keep and the epoch they come from.

        The best epoch's (see ``best_epoch_metric``) when early stopping or accuracy
        selection is on, else the last. With ``temperature_scaling`` the tabular
        network's temperature is fitted on the validation split here (once).
        """
        if self._final is None:
            if self.keeps_best and self.best_state is not None:
                epoch = self.best_epoch
                state = {k: v.detach().cpu().clone() for k, v in self.best_state.items()}
            else:
                state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
                epoch = self.last_epoch
            if self.config.temperature_scaling and "temperature" in state and len(self.y_val):
                state["temperature"] = self._fit_temperature(state)
            self._final = epoch, state
        epoch, state = self._final
        return epoch, dict(state)

    def _fit_temperature(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        network = build_network(self.arch)
        network.load_state_dict(state)
        network.eval()
        chunks = []
        x_val, y_val = self.x_val.cpu(), self.y_val.cpu()  # the kept weights are on the CPU
        folds = None if self.folds is None else self.folds.cpu()
        with torch.inference_mode():
            for i in range(0, len(y_val), 8192):
                if folds is None:
                    chunks.append(network.member_logits(x_val[i : i + 8192]))
                else:  # each row's out-of-fold member only
                    xb, fold = x_val[i : i + 8192], folds[i : i + 8192]
                    chunks.append(out_of_fold_logits(network, xb, fold).unsqueeze(0))
        members = torch.cat(chunks, dim=1)
        return torch.tensor(fit_temperature(members, y_val), dtype=torch.float32)

    def _schedule_dropout(self, epoch: int) -> None:
        if self.config.dropout_schedule != "flat_cosine" or not self.config.dropout:
            return
        rate = self.config.dropout * _flat_cosine((epoch - 1) / self.config.epochs)
        for module in self.model.modules():
            if isinstance(module, nn.Dropout):
                module.p = rate

    def _step_scheduler(self, monitored: float) -> None:
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(monitored)
        elif isinstance(self.scheduler, _PER_STEP):
            pass  # stepped after every batch
        elif self.scheduler is not None:
            self.scheduler.step()

    def _track_best(
        self, epoch: int, train_loss: float, val_loss: float | None, val_accuracy: float | None
    ) -> bool:
        if val_loss is None:
            monitored, tiebreak = train_loss, 0.0
        elif self.config.best_epoch_metric == "accuracy":
            monitored, tiebreak = 1.0 - val_accuracy, val_loss
        else:
            monitored, tiebreak = val_loss, 0.0
        improved = monitored < self.best_loss - self.config.min_delta
        tie_won = monitored <= self.best_loss and tiebreak < self.best_tiebreak
        if improved or tie_won:
            self.best_loss, self.best_tiebreak, self.best_epoch = monitored, tiebreak, epoch
            if self.keeps_best:
                self.best_state = copy.deepcopy(self.model.state_dict())
        if improved:
            self.stale_epochs = 0
            return False
        self.stale_epochs += 1
        return self.patience is not None and self.stale_epochs > self.patience


@contextlib.contextmanager
def flush_denormals() -> Iterator[None]:
    """Run the block with denormal floats flushed to zero on the CPU (this thread; off
    again after: torch's default).

    Adam's second moments of weights whose gradients have all but vanished (units of a
    ReLU network that rarely fire) sink below float32's normal range as training goes
    on, and the CPU computes with denormal numbers many times slower: without this, the
    plain recipe's later epochs ran at half the first one's samples per CPU-second
    (bench/README.md, scale.py). Flushing changes values below 1.2e-38 only.
    """
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def out_of_fold_logits(network: TabularNet, x: torch.Tensor, folds: torch.Tensor) -> torch.Tensor:
    """Each row's logits from the one member that did not train on it (member m is
    fold m's), before the temperature: ``(rows, classes)``.

    Each member runs on its own fold's rows only (stacked, padded to the largest fold, as
    one ``(k, rows, inputs)`` batch), not every member on every row: 1/k of the work.
    """
    k = network.k
    counts = torch.bincount(folds, minlength=k)
    order = torch.argsort(folds, stable=True)
    member = folds[order]
    position = torch.arange(len(folds), device=folds.device) - (counts.cumsum(0) - counts)[member]
    grid = x.new_zeros((k, int(counts.max()) if len(folds) else 0, x.shape[1]))
    grid[member, position] = x[order]
    logits = network.member_logits(grid)
    chosen = torch.empty((len(folds), logits.shape[-1]), dtype=logits.dtype, device=x.device)
    chosen[order] = logits[member, position]
    return chosen


def out_of_fold(network: TabularNet, x: torch.Tensor, folds: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of each row from the one member that did not train on it."""
    return torch.log_softmax(out_of_fold_logits(network, x, folds) / network.temperature, dim=-1)


def folds_for(folds: int | str, n_rows: int) -> int:
    """Bagging folds: ``folds``, or ``"auto"`` resolved by the table of hyperparameters
    (:func:`~service.ml.hyperparameters.resolve_folds`: 3 under 2,000 labelled rows,
    4 under 5,000)."""
    return resolve_folds(folds, n_rows)


def batch_size_for(batch_size: int | str, n_rows: int) -> int:
    """The rows per step: ``batch_size``, or for ``"auto"`` 256 rows, fewer on small
    tables so that an epoch takes at least 8 steps (and a batch at least 16 rows)."""
    if batch_size == "auto":
        return int(min(256, max(16, 2 ** int(math.log2(max(n_rows, 1) / 8 + 1)))))
    return int(batch_size)


def architecture_for(
    config: TrainingConfig,
    n_inputs: int,
    n_classes: int,
    numeric_inputs: tuple[int, ...] = (),
    folds: int = 0,
) -> Architecture:
    """The network shape ``config`` asks for, for an input of ``n_inputs`` columns
    (with ``folds`` bagging folds, one ensemble member per fold)."""
    tabular = config.network == "tabular"
    members = folds if tabular and folds >= 2 else config.ensemble_size
    return Architecture(
        n_inputs=n_inputs,
        n_classes=n_classes,
        hidden_layers=config.hidden_layers,
        activation=config.activation,
        dropout=config.dropout,
        batch_norm=config.batch_norm and not tabular,
        kind=config.network,
        numeric_inputs=tuple(numeric_inputs) if tabular else (),
        smooth_clip=tabular and config.scaling in ("robust", "quantile"),
        squash=config.squash,
        embedding=config.embedding if tabular else "none",
        embedding_frequencies=config.embedding_frequencies,
        embedding_dim=config.embedding_dim,
        scale_layer=bool(config.scale_layer) and tabular,
        ensemble_size=members if tabular else 1,
    )


def to_tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 features and int64 codes as tensors sharing the arrays' memory."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(
        np.ascontiguousarray(y, dtype=np.int64)
    )


def _make_optimizer(model: nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    # torch's fused kernels update every parameter in one call instead of a Python loop
    # over tensors: the same update, about a third more samples/s for a small MLP on CPU
    # (bench/README.md).
    params = list(model.parameters())
    if config.optimizer == "sgd":
        cls, options = torch.optim.SGD, {"momentum": config.momentum}
    else:
        adam = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[config.optimizer]
        cls, options = adam, {"betas": (0.9, config.adam_beta2)}
    make = functools.partial(
        cls, lr=config.learning_rate, weight_decay=config.weight_decay, **options
    )
    try:
        return make(params, fused=True)
    except (RuntimeError, TypeError):  # no fused kernel for this device or dtype
        return make(params)


def _make_scheduler(optimizer: torch.optim.Optimizer, config: TrainingConfig, steps: int):
    if config.lr_scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.lr_step_size, gamma=config.lr_gamma
        )
    if config.lr_scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.lr_scheduler == "one_cycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.learning_rate, epochs=config.epochs, steps_per_epoch=steps
        )
    if config.lr_scheduler in ("coslog4", "flat_cosine"):
        return StepSchedule(optimizer, config.lr_scheduler, config.epochs * steps)
    if config.lr_scheduler == "reduce_on_plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=config.lr_gamma, patience=max(1, config.lr_step_size // 5)
        )
    return None


def _coslog4(t: float) -> float:
    """Four cosine cycles in log time, each twice as long as the one before; 0 at the
    start and at the end of each cycle (RealMLP's ``coslog4``)."""
    return 0.5 - 0.5 * math.cos(2 * math.pi * math.log2(1 + 15 * t))


def _flat_cosine(t: float) -> float:
    """1 for the first half, then a cosine down to 0."""
    return 1.0 if t < 0.5 else 0.5 + 0.5 * math.cos(math.pi * (2 * t - 1))


class StepSchedule:
    """A learning-rate multiplier stepped after every batch over ``total`` steps.

    Plain data (``state_dict`` is the step count), so a checkpoint restores it exactly.
    """

    SHAPES = {"coslog4": _coslog4, "flat_cosine": _flat_cosine}

    def __init__(self, optimizer: torch.optim.Optimizer, shape: str, total: int):
        self.optimizer = optimizer
        self.shape = self.SHAPES[shape]
        self.total = max(1, total)
        self.base = [group["lr"] for group in optimizer.param_groups]
        self.steps = 0
        self._apply()

    def step(self) -> None:
        self.steps += 1
        self._apply()

    def _apply(self) -> None:
        # Evaluated half a step ahead so the first step is not taken at a rate of 0.
        factor = self.shape(min(1.0, (self.steps + 0.5) / self.total))
        for group, base in zip(self.optimizer.param_groups, self.base, strict=True):
            group["lr"] = base * factor

    def state_dict(self) -> dict:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        self._apply()


_PER_STEP = (torch.optim.lr_scheduler.OneCycleLR, StepSchedule)
