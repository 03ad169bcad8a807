"""What a path is, judged before it is opened: a FIFO waited for a writer for ever, /dev/zero was read until memory ran out.

Standard library only: the cheap commands (``dataset info``, ``zoo ls``) use it without numpy, PIL or yaml.
"""

from __future__ import annotations

import errno
import json
import os
import stat

FOLDER = "a folder"
DEVICE = "a pipe, socket or device"
BROKEN_LINK = "a broken symbolic link"
MISSING = "no such file"
NOT_REGULAR = f"not a regular file ({DEVICE})"
"""The one wording of a FIFO, socket or device refused (``/dev/zero``, a FIFO put in a file's place)."""


class NotRegularFile(OSError):
    """A path that :func:`read_regular` refused unopened (errno EINVAL; ``strerror`` says what it is)."""


def what_is(path: str | os.PathLike) -> str | None:
    """None for a regular file (or a link to one), else what the path is: :data:`FOLDER`, :data:`DEVICE`,
    :data:`BROKEN_LINK` (its target gone, or links that loop) or :data:`MISSING`; other errors (a folder on the
    way that may not be searched) are stat's OSError."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise
        return BROKEN_LINK if e.errno == errno.ELOOP or os.path.islink(path) else MISSING
    return _kind(mode)


def _kind(mode: int) -> str | None:
    """None for a regular file's ``st_mode``, else what it is."""
    return None if stat.S_ISREG(mode) else FOLDER if stat.S_ISDIR(mode) else DEVICE


def refusal(kind: str) -> str:
    """The short reason a path of kind ``kind`` (from :func:`what_is`) is not read: ``not a regular file (…)``."""
    return kind if kind in (BROKEN_LINK, MISSING) else f"not a regular file ({kind})"


def read_regular(path: str | os.PathLike, limit: int | None = None) -> bytes:
    """The first ``limit`` bytes of a regular file (all of it for None); anything else is refused unopened with a
    :class:`NotRegularFile`, a missing file or a broken link with FileNotFoundError (as opening it would)."""
    kind = what_is(path)
    if kind in (MISSING, BROKEN_LINK):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT) if kind == MISSING else kind, str(path))
    if kind is not None:
        raise NotRegularFile(errno.EINVAL, refusal(kind), str(path))
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # replaced by a FIFO meanwhile: opened without waiting,
    with open(fd, "rb") as f:  # and refused below
        if kind := _kind(os.fstat(fd).st_mode):
            raise NotRegularFile(errno.EINVAL, refusal(kind), str(path))
        return f.read() if limit is None else f.read(limit)


def read_json(path: str | os.PathLike, limit: int | None = None):
    """A regular file's JSON (its first ``limit`` bytes), refused unopened otherwise as :func:`read_regular` does; JSON
    nested thousands deep is a ValueError (json's RecursionError, which each caller had to catch besides)."""
    data = read_regular(path, limit)  # a missing file, a broken link: FileNotFoundError
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("nested too deep") from None
