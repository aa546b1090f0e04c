"""Names each OS thread after its Python thread (``prctl(PR_SET_NAME)``, 15 characters),
so that /proc/PID/task/TID/stat says which thread used the CPU. Python does this itself
only from 3.14; ``bench/upload_threads.py`` puts this directory first on the service's
PYTHONPATH. Not part of the service."""

import ctypes
import threading

_PR_SET_NAME = 15
_libc = ctypes.CDLL(None, use_errno=True)
_bootstrap_inner = threading.Thread._bootstrap_inner


def _named(self):
    try:
        _libc.prctl(_PR_SET_NAME, self.name[:15].encode(), 0, 0, 0)
    except Exception:  # noqa: BLE001, S110 - a name is a convenience
        pass
    return _bootstrap_inner(self)


threading.Thread._bootstrap_inner = _named
