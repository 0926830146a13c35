"""The C library, loaded once per process through ctypes (POSIX regex, locales, mallopt).

"libc.so.6" is tried first: ctypes.util.find_library() runs ldconfig in a subprocess,
which each new daemon process would pay for.
"""

import ctypes
import ctypes.util

_libc = None


def libc():
    """The C library as a ctypes.CDLL, or None where there is none to load."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL("libc.so.6")
        except OSError:
            name = ctypes.util.find_library("c")
            _libc = ctypes.CDLL(name) if name else False
    return _libc or None
