"""ftx serve's allocator settings: a request-sized buffer comes from the heap, not from fresh mmap pages."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys
import textwrap

import pytest

# In a fresh process: glibc's mallinfo2 counts the bytes held in mmapped blocks (hblkhd). A 1 MiB block is
# mmapped under glibc's defaults (threshold 128 KiB) and comes from the heap after keep_freed_memory().
_PROBE = textwrap.dedent("""
    import ctypes, ctypes.util, sys
    from serving.allocator import keep_freed_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)

    def mmapped_bytes_for_one_mib() -> int:
        before = libc.mallinfo2().hblkhd
        block = libc.malloc(1 << 20)
        during = libc.mallinfo2().hblkhd
        libc.free(block)
        return during - before

    default = mmapped_bytes_for_one_mib()
    applied = keep_freed_memory()
    print(default, applied, mmapped_bytes_for_one_mib())
""")


@pytest.mark.skipif(not ctypes.util.find_library("c") or sys.platform != "linux", reason="glibc's mallopt")
def test_a_request_sized_block_comes_from_the_heap_after_keep_freed_memory():
    result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    default, applied, after = result.stdout.split()
    assert int(default) >= 1 << 20  # glibc's default: a fresh mapping for each such block
    assert applied == "True"
    assert int(after) == 0
