"""The epoch loop: small named steps, and ``fit`` yielding one plain record per epoch.

The caller (the training use case) drives the generator: it decides what to do
with each record (write a database row) and may ask the loop to stop through
``should_stop``, checked between batches.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from service.ml.checkpoint import load_checkpoint, save_checkpoint
from service.ml.device import autocast
from service.ml.hyperparameters import BY_NAME, TrainingConfig
from service.ml.network import Architecture, build_mlp

OPTIMIZERS = BY_NAME["optimizer"].choices
LR_SCHEDULERS = BY_NAME["lr_scheduler"].choices

__all__ = ["LR_SCHEDULERS", "OPTIMIZERS", "EpochRecord", "Trainer", "TrainingConfig", "to_tensors"]


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
    device:
        Where to train. The network is initialised on the CPU (the same weights on any
        device), then it and the four tensors move to ``device`` once, here; batches
        are cut on the device. Checkpoints and :meth:`final_state` are CPU tensors.
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
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        torch.manual_seed(self.config.seed)
        self.model = build_mlp(self.arch)
        self._place()
        self.optimizer = _make_optimizer(self.model, self.config)
        self.steps_per_epoch = max(1, math.ceil(len(self.y_train) / self.config.batch_size))
        self.scheduler = _make_scheduler(self.optimizer, self.config, self.steps_per_epoch)
        self.loss_fn = nn.CrossEntropyLoss(weight=self.class_weights)
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.best_loss = math.inf
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stale_epochs = 0

    def _place(self) -> None:
        """Move the network and the data to the device, once per job."""
        if self.device.type != "cpu":
            self.model.to(self.device)
            self.x_train, self.y_train, self.x_val, self.y_val = (
                t.to(self.device) for t in (self.x_train, self.y_train, self.x_val, self.y_val)
            )
            if self.class_weights is not None:
                self.class_weights = self.class_weights.to(self.device)
        self.autocast = autocast(self.device, self.config.precision)

    def train_step(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step on one batch.

        Returns the batch's summed loss and how many of its rows were classified right
        (by the weights before the step), as 0-d tensors on the device: reading them
        would wait for the device after every batch, so the epoch adds them up first.
        """
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            logits = self.model(xb)
            loss = self.loss_fn(logits, yb)
        loss.backward()
        if self.config.gradient_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.gradient_clip)
        self.optimizer.step()
        if isinstance(self.scheduler, torch.optim.lr_scheduler.OneCycleLR):
            self.scheduler.step()
        correct = (logits.detach().argmax(dim=1) == yb).sum()
        return loss.detach() * len(yb), correct

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
                logits = self.model(xb).float()
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
        # Shuffled on the CPU by the job's own generator, so the order is the same on
        # any device (and restorable from a checkpoint); one index vector per epoch moves.
        order = torch.randperm(len(self.y_train), generator=self.generator).to(self.device)
        total = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        seen = 0
        size = self.config.batch_size
        for start in range(0, len(order), size):
            if should_stop():
                return None
            index = order[start : start + size]
            if len(index) < 2 and self.arch.batch_norm and seen:
                continue  # batch norm cannot normalise a batch of one row
            loss, right = self.train_step(self.x_train[index], self.y_train[index])
            total += loss
            correct += right
            seen += len(index)
        return total.item() / seen, correct.item() / seen

    def fit(self, should_stop: Callable[[], bool] = lambda: False) -> Iterator[EpochRecord]:
        """Train up to epoch ``config.epochs``, yielding one record per finished epoch.

        Starts after ``last_epoch``: 1 for a new trainer, *k* + 1 for one restored from a
        checkpoint of epoch *k* (see ``checkpoint``). Early stopping
        (``early_stopping_patience``) ends the loop with a record whose ``stop`` is true,
        and :meth:`final_state` then returns the best epoch's weights.
        """
        for epoch in range(self.last_epoch + 1, self.config.epochs + 1):
            started = time.perf_counter()
            learning_rate = self.optimizer.param_groups[0]["lr"]
            trained = self.run_epoch(should_stop)
            if trained is None:
                return
            train_loss, train_accuracy = trained
            train_time = time.perf_counter() - started
            val_loss, val_accuracy = self.validation_step()
            self._step_scheduler(val_loss if val_loss is not None else train_loss)
            stop = self._track_best(epoch, val_loss if val_loss is not None else train_loss)
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

    def restore(self, tensors: bytes, state: dict) -> None:
        """Continue from a :meth:`checkpoint`; the next :meth:`fit` starts one epoch later."""
        load_checkpoint(self, tensors, state)

    def final_state(self) -> tuple[int, dict[str, torch.Tensor]]:
        """The weights to keep and the epoch they come from.

        With early stopping on, the best epoch's (lowest monitored loss); else the last.
        """
        if self.config.early_stopping_patience is not None and self.best_state is not None:
            return self.best_epoch, {
                k: v.detach().cpu().clone() for k, v in self.best_state.items()
            }
        state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        return self.last_epoch, state

    def _step_scheduler(self, monitored: float) -> None:
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(monitored)
        elif isinstance(self.scheduler, torch.optim.lr_scheduler.OneCycleLR):
            pass  # stepped after every batch
        elif self.scheduler is not None:
            self.scheduler.step()

    def _track_best(self, epoch: int, monitored: float) -> bool:
        if monitored < self.best_loss - self.config.min_delta:
            self.best_loss = monitored
            self.best_epoch = epoch
            self.stale_epochs = 0
            if self.config.early_stopping_patience is not None:
                self.best_state = copy.deepcopy(self.model.state_dict())
            return False
        self.stale_epochs += 1
        patience = self.config.early_stopping_patience
        return patience is not None and self.stale_epochs > patience


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
    if config.optimizer == "adam":
        make = functools.partial(
            torch.optim.Adam, lr=config.learning_rate, weight_decay=config.weight_decay
        )
    elif config.optimizer == "adamw":
        make = functools.partial(
            torch.optim.AdamW, lr=config.learning_rate, weight_decay=config.weight_decay
        )
    else:
        make = functools.partial(
            torch.optim.SGD,
            lr=config.learning_rate,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
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
    if config.lr_scheduler == "reduce_on_plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=config.lr_gamma, patience=max(1, config.lr_step_size // 5)
        )
    return None
