"""The package's one atomic-write helper (core: standard library only).

A file is written to a uniquely named temporary file beside its destination, then renamed over
it, so readers see either the old or the new content, never a partial file. On any failure
(the destination is a directory, its folder cannot be created, the disk is full) the temporary
file is removed and the :class:`OSError` propagates.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path


def write_atomic(path: str | Path, data: str | bytes, fsync: bool = False) -> None:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically.

    Args:
        path: the destination; its parent folders are created.
        data: the whole content.
        fsync: flush the file to disk before the rename (checkpoints).

    Raises:
        OSError: the file cannot be written (nothing is left behind but what was there); its
            ``filename`` is ``path`` (never the temporary file's name).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file stands where a folder is needed
        raise NotADirectoryError(
            errno.ENOTDIR, "a file stands where a folder is needed", str(path.parent)
        ) from None
    payload = data.encode("utf-8") if isinstance(data, str) else data
    # A unique name (concurrent writers never share one); mode 0o666 honours the umask.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:  # a read-only place: name the file meant, not the temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.errno is not None:  # e.g. a full disk mid-write
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
