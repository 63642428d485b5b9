"""A call that may hang on a FIFO, run in a thread with a time limit (the training and data set tests)."""
from __future__ import annotations

import os
import threading

import pytest


def in_thread(fn, fifos, timeout=120):
    """fn() in a thread; fails (after unblocking any reader of the FIFOs) if it does not return in time."""
    result = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
            result["error"] = e

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        for fifo in fifos:
            if fifo.is_fifo():
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("hangs (reading a FIFO?)")
    if "error" in result:
        raise result["error"]
    return result.get("value")
