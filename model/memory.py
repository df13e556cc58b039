"""Give freed heap memory back to the operating system (glibc ``malloc_trim``).

ONNX Runtime with its CPU arena off frees each batch's activation buffers, but glibc keeps the
freed pages mapped, so a process that scored one batch of long texts stays ~200 MiB larger than
one that did not (measured in the README's serving-memory table). ``malloc_trim(0)`` returns
them: 0.8 ms after a batch of 1, 10 ms after a batch of 64 on this machine, so the service calls
it only once the model has been idle for a moment (service.api.batcher).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        fn = ctypes.CDLL(name or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to call
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn  # type: ignore[no-any-return]


def release_free_memory() -> bool:
    """Return freed heap pages to the OS; False when the C library has no ``malloc_trim``."""
    fn = _malloc_trim()
    if fn is None:
        return False
    fn(0)
    return True


def trim_available() -> bool:
    return _malloc_trim() is not None
