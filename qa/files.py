"""Bounded, regular-file-only reads of the files a user hands us (rule packs, configurations,
label files, recordings).

A path on the command line may name anything: `/dev/zero` (endless), a FIFO (blocks until a
writer comes), a directory, a 10 GB log file. Each is refused with one clear error before any
byte is read, and text files are capped in size, so a mistyped path never hangs the service
or fills its memory.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import BinaryIO

from qa.errors import ConfigError

__all__ = ["MAX_TEXT_BYTES", "open_regular", "read_text"]

#: Largest rule pack, configuration or label file read (1 MiB): the largest real pack is
#: a few KiB, so anything near this is a wrong file.
MAX_TEXT_BYTES = 1 << 20

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str, error: Callable[[str, str], Exception] = ConfigError) -> BinaryIO:
    """Opens `path` for binary reading, refusing anything but a regular file.

    The file is opened non-blocking, so a FIFO without a writer is detected instead of
    hanging the open, and checked with `fstat` on the open descriptor (no race with a
    rename between the check and the read).

    Args:
        path: The file.
        error: The exception class to raise, called as `error(path, reason)`.

    Raises:
        error: No such file, no permission, or not a regular file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(path, "cannot read: no such file") from None
    except IsADirectoryError:
        raise error(path, "is a directory, not a file") from None
    except OSError as exc:
        raise error(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(path, f"is {_kind(mode)}, not a regular file")
        # Back to blocking reads: the non-blocking flag only guarded the open.
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_text(
    path: str, *, limit: int = MAX_TEXT_BYTES, error: type[ConfigError] = ConfigError
) -> str:
    """Reads a UTF-8 text file of at most `limit` bytes.

    Args:
        path: The file.
        limit: Most bytes accepted.
        error: The exception class to raise, called as `error(path, reason, line=...)`.

    Returns:
        The text.

    Raises:
        error: Not a regular file, unreadable, larger than `limit`, or not UTF-8 (with the
            line of the first bad byte).
    """
    with open_regular(path, error) as handle:
        try:
            # One byte more than allowed tells "exactly at the limit" from "over it", and
            # a file that grows while read (a log) is still cut off.
            data = handle.read(limit + 1)
        except OSError as exc:
            raise error(path, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise error(path, f"too large: over {_size(limit)} (a rule, config or label file is "
                          f"a few KiB)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(
            path, f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start}",
            line=line,
        ) from None


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and not n % (1 << 20) else f"{n} bytes"
