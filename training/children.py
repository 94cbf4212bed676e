"""Child processes that die with their parent, even when the parent is killed with SIGKILL.

On Linux the child asks the kernel for SIGKILL on its parent's death
(``PR_SET_PDEATHSIG``) and then execs the real command, so no ``preexec_fn``
runs in a process that has TensorFlow's threads. Elsewhere the command runs
as it is.
"""

from __future__ import annotations

import os
import sys

_SHIM = ("import ctypes, os, sys\n"
         "ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL\n"
         "if os.getppid() != int(sys.argv[1]): os._exit(137)  # the parent died before the request took effect\n"
         "os.execvp(sys.argv[2], sys.argv[2:])\n")


def tied_to_parent(command: list[str]) -> list[str]:
    """``command``, wrapped so that it is killed when this process dies (Linux; unchanged elsewhere)."""
    if not sys.platform.startswith("linux"):
        return list(command)
    return [sys.executable, "-c", _SHIM, str(os.getpid()), *command]
