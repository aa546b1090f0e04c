"""Where training runs: the device a worker offers, the device a job gets, and the
mixed-precision context, in one place.

A worker is configured with ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; a job asks for
``"device": "cpu"`` (the default) or ``"gpu"``. :func:`worker_device` answers without
initialising CUDA (with ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` torch asks NVML), so a
worker's main process can decide its queues and still fork its pool safely.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch

from service.ml.errors import MLError

# The default batch of a GPU job that does not set one: a small MLP on a GPU is bound by
# kernel launches at the CPU default of 32 rows (bench/gpu.py measures both).
GPU_BATCH_SIZE = 512


def worker_device(setting: str) -> str:
    """The device a worker trains GPU jobs on (``"cuda:N"``), or ``"cpu"`` for a CPU worker.

    Parameters
    ----------
    setting:
        ``TRAINSERVE_DEVICE``: ``auto`` (the first GPU if there is one), ``cpu``, ``cuda``
        (the first GPU) or ``cuda:N``; asking for a GPU that is not there is an error.
    """
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    if setting == "cpu":
        return "cpu"
    available = torch.cuda.is_available()
    if setting == "auto":
        return "cuda:0" if available else "cpu"
    index = int(setting.partition(":")[2] or 0)
    if not available or index >= torch.cuda.device_count():
        raise MLError(
            f"TRAINSERVE_DEVICE={setting}, but torch sees "
            f"{torch.cuda.device_count() if available else 'no'} CUDA device(s)"
        )
    return f"cuda:{index}"


def job_device(requested: str, worker: str) -> torch.device:
    """The device a job that asked for ``requested`` trains on, on a worker offering
    ``worker`` (from :func:`worker_device`): CPU jobs train on the CPU everywhere."""
    if requested == "gpu":
        if worker == "cpu":
            raise MLError("this job asks for a GPU and this worker has none")
        return torch.device(worker)
    return torch.device("cpu")


def describe(device: torch.device) -> str:
    """``cpu`` or ``cuda:0 (NVIDIA H100 80GB HBM3)``, for the metrics and the log."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def autocast(device: torch.device, precision: str) -> Callable[[], AbstractContextManager]:
    """A factory of the context the forward passes run in: bf16 autocast, or nothing.

    Weights, optimizer state and the loss's reduction stay float32 either way, so a
    bf16-trained model is an ordinary float32 model.
    """
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext
