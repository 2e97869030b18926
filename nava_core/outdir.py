"""Output-folder problems (not a folder, not writable, disk full) as one line that says what to do.

Why its own module: the CLI, the batch runner and the job runner all write outputs, and a full disk or
a mistyped `--out` is not a failed render: the request was fine, the place to put it was not. Such an
error stops the run (`nava-render` exits 3) and puts an interrupted batch job back in line instead of
recording it as failed.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

# errno values that describe the output location, not the render
_FOLDER_ERRNOS = {
    errno.ENOTDIR: "is not a folder (a file is in the way: {path})",
    errno.EEXIST: "cannot be created because a file with that name exists ({path})",
    errno.EACCES: "is not writable (permission denied: {path})",
    errno.EPERM: "is not writable (operation not permitted: {path})",
    errno.EROFS: "is on a read-only file system ({path})",
    errno.ENOSPC: "is on a full disk (no space left writing {path})",
    errno.EDQUOT: "is over its disk quota (writing {path})",
    errno.EFBIG: "cannot take a file this large (file size limit reached writing {path})",
    errno.EISDIR: "has a folder where a file must go ({path})",
    errno.ENAMETOOLONG: "has a name that is too long ({path})",
}
_FIX = {
    errno.ENOSPC: "free some space or choose another --out folder",
    errno.EDQUOT: "free some space or choose another --out folder",
    errno.EFBIG: "free some space or choose another --out folder",
}


class OutputFolderError(RuntimeError):
    """The output folder cannot take the render's files; the message is one line with a fix."""

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_


LOW_SPACE_BYTES = 64 * 1024 * 1024  # below this, a failed write is taken for a full disk


def free_bytes(folder: str | os.PathLike[str]) -> int | None:
    """Free space for an unprivileged writer on the file system of `folder` (its nearest existing ancestor)."""
    q = Path(folder)
    while not q.exists() and q.parent != q:
        q = q.parent
    try:
        st = os.statvfs(q)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def is_output_error(exc: BaseException, folder: str | os.PathLike[str] | None = None) -> bool:
    """Whether `exc` is about the place outputs go (so the job is not to blame).

    Encoders (libsndfile, FFmpeg) report a full disk as "System error." without an errno; with `folder`
    given, any failure while its file system is nearly full counts as a full disk.
    """
    if isinstance(exc, OutputFolderError):
        return True
    if isinstance(exc, OSError) and getattr(exc, "errno", None) in _FOLDER_ERRNOS:
        return True
    if folder is not None and not isinstance(exc, (KeyboardInterrupt, SystemExit)):
        free = free_bytes(folder)
        return free is not None and free < LOW_SPACE_BYTES
    return False


def describe(exc: OSError, folder: str | os.PathLike[str]) -> str:
    """One line for an OSError met while writing into `folder`."""
    code = getattr(exc, "errno", None)
    path = getattr(exc, "filename", None) or folder
    what = _FOLDER_ERRNOS.get(code, "cannot be written ({path}: {err})")
    why = what.format(path=path, err=getattr(exc, "strerror", None) or exc)
    fix = _FIX.get(code, "choose a writable folder with --out")
    return f"the output folder {folder} {why}; {fix}"


def as_output_error(exc: BaseException, folder: str | os.PathLike[str]) -> OutputFolderError:
    if isinstance(exc, OutputFolderError):
        return exc
    if isinstance(exc, OSError) and getattr(exc, "errno", None) in _FOLDER_ERRNOS:
        return OutputFolderError(describe(exc, folder), exc.errno)
    free = free_bytes(folder)
    left = f"{free / 1024:.0f} KB free" if free is not None else "no space left"
    return OutputFolderError(f"the output folder {folder} is on a full disk ({left}; writing failed: "
                             f"{' '.join(str(exc).split())[:200]}); free some space or choose another --out folder",
                             errno.ENOSPC)


def check_output_dir(folder: str | os.PathLike[str], create: bool = True) -> Path:
    """Make sure `folder` can take files (created, then a probe file written and removed).

    With `create=False` nothing is written: the nearest existing ancestor must be a writable folder.
    Raises OutputFolderError with one line saying what is wrong and what to do.
    """
    p = Path(folder)
    try:
        if not create:
            q = p
            while not os.path.lexists(q) and q.parent != q:
                q = q.parent
            if not q.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(q))
            if not os.access(q, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(q))
            return p
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".nava-write-check-", dir=p)
        try:
            os.write(fd, b"\0" * 4096)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as e:
        raise as_output_error(e, p) from e
    return p


__all__ = ["OutputFolderError", "check_output_dir", "describe", "as_output_error", "is_output_error"]
