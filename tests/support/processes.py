"""Child processes that run in sessions of their own (tests and bench/ alike)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def stop_group(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM ``process``'s process group and wait; SIGKILL the group if it has not
    exited ``timeout`` seconds later. Nothing if it has exited already."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
