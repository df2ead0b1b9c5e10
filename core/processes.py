"""Child processes that do not outlive the process that started them."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen``: on Linux the child gets ``sig`` when its parent
    dies, however it dies (SIGKILL, a closed terminal, a crash). Elsewhere: None (no such feature).

    The kernel ties this to the thread that started the child, so call Popen from a thread that
    lives as long as the child should (the main thread).
    """
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)

    def _preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return _preexec


def die_with_parent_now(parent: int, sig: signal.Signals = signal.SIGKILL) -> None:
    """Make the calling (just forked) process get ``sig`` when ``parent`` dies. Linux only."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(sig))
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), sig)
