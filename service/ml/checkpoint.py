"""A trainer's whole state as safetensors bytes plus JSON: weights, optimizer, scheduler,
random generators and early-stopping bookkeeping. Nothing is pickled.

A trainer restored from a checkpoint taken after epoch *k* continues exactly as the
original would have: same batches, same dropout masks, same updates.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from service.ml.errors import MLError

CHECKPOINT_FORMAT = 1


def save_checkpoint(trainer) -> tuple[bytes, dict[str, Any]]:
    """Serialise ``trainer`` (a :class:`~service.ml.training.Trainer`).

    Returns
    -------
    ``(tensors, state)``: safetensors bytes and a JSON-safe dict; both are needed to restore.
    """
    tensors: dict[str, torch.Tensor] = {}
    for name, value in trainer.model.state_dict().items():
        tensors[f"model.{name}"] = value
    if trainer.best_state is not None:
        for name, value in trainer.best_state.items():
            tensors[f"best.{name}"] = value
    optimizer = trainer.optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in optimizer["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    tensors["rng.generator"] = trainer.generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    if trainer.device.type == "cuda":  # dropout on the GPU draws from the GPU's generator
        tensors["rng.cuda"] = torch.cuda.get_rng_state(trainer.device)
    state = {
        "format": CHECKPOINT_FORMAT,
        "epoch": trainer.last_epoch,
        "best_epoch": trainer.best_epoch,
        "best_loss": trainer.best_loss,
        "best_tiebreak": trainer.best_tiebreak,
        "stale_epochs": trainer.stale_epochs,
        "optimizer_groups": optimizer["param_groups"],
        "optimizer_scalars": scalars,
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
    }
    # CPU tensors: a checkpoint taken on a GPU resumes on any device.
    blob = save_safetensors({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()})
    return blob, _json_safe(state)


def read_tensors(parts: Iterable[bytes]) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors from its safetensors bytes given in parts, in order.

    safetensors reads bytes held whole or a file, never a stream, so the parts go to a
    temporary file one at a time and the tensors are read from it: memory holds the
    tensors and one part, where joining the parts held the whole blob twice and its
    tensors beside it. Each tensor is copied out of the file's map, so none outlives it.
    """
    with tempfile.NamedTemporaryFile(prefix="trainserve-checkpoint-") as spool:
        for part in parts:
            spool.write(part)
        spool.flush()
        with safe_open(spool.name, framework="pt") as file:
            return {name: file.get_tensor(name).clone() for name in file.keys()}


def load_checkpoint(
    trainer, tensors: bytes | dict[str, torch.Tensor], state: dict[str, Any]
) -> None:
    """Put a trainer built with the same architecture and config back into a saved state
    (``tensors``: the safetensors bytes, or what :func:`read_tensors` read)."""
    state = _from_json_safe(state)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise MLError(f"unknown checkpoint format {state.get('format')!r}")
    if isinstance(tensors, bytes):
        tensors = load_safetensors(tensors)
    trainer.model.load_state_dict(_prefixed(tensors, "model."))
    best = _prefixed(tensors, "best.")
    trainer.best_state = best or None
    optimizer_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            optimizer_state.setdefault(int(index), {})[name] = value
    for index, values in state["optimizer_scalars"].items():
        optimizer_state.setdefault(int(index), {}).update(values)
    trainer.optimizer.load_state_dict(
        {"state": optimizer_state, "param_groups": state["optimizer_groups"]}
    )
    if trainer.scheduler is not None and state["scheduler"] is not None:
        trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.generator.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch"])
    if trainer.device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], trainer.device)
    trainer.last_epoch = state["epoch"]
    trainer.best_epoch = state["best_epoch"]
    trainer.best_loss = state["best_loss"]
    # Checkpoints written before accuracy selection have no tie-break (loss selection).
    trainer.best_tiebreak = state.get("best_tiebreak", math.inf)
    trainer.stale_epochs = state["stale_epochs"]


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _json_safe(value: Any) -> Any:
    """Tuples as lists and non-finite floats as tagged objects (strict JSON has no inf)."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _from_json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        return {k: _from_json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json_safe(v) for v in value]
    return value
