"""Environment errors (a full disk, a read-only directory, a size limit) as one line, not a traceback.

They reach the CLI as Python's own `OSError`s, or wrapped by orbax and tensorstore, whose
messages carry the OS error's text. `environment_error` recognises both, so the CLI prints one
line, a sweep stops instead of marking run after run failed on the same full disk, and no
failed.json is written: rerunning once the cause is fixed resumes the run.
"""

from __future__ import annotations

import errno
import os
import re

from patchscale.errors import StorageError

KINDS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file-size limit is reached (ulimit -f)",
    errno.EROFS: "the filesystem is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EISDIR: "it is a directory",
    errno.EIO: "an input/output error of the device",
}
ADVICE = "fix that and run the same command again (a run resumes from its last checkpoint)"


def environment_error(exc: BaseException) -> StorageError | None:
    """A one-line StorageError for `exc` when it, or an exception it was raised from, is an OS error."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, OSError) and exc.errno is not None:
        return StorageError(_describe(exc.errno, exc.filename, exc.strerror))
    seen = set()
    chain = exc
    while chain is not None and id(chain) not in seen:  # Wrapped: only the kinds above, by code or by text.
        seen.add(id(chain))
        if isinstance(chain, OSError) and chain.errno in KINDS:
            return StorageError(_describe(chain.errno, chain.filename, chain.strerror))
        text = str(chain)
        for code in KINDS:
            if os.strerror(code) in text:  # tensorstore: "... [OS error 28: No space left on device]".
                return StorageError(_describe(code, None, None, text))
        chain = chain.__cause__ or chain.__context__
    return None


def _describe(code: int, filename, strerror, message: str | None = None) -> str:
    kind = KINDS.get(code, strerror or os.strerror(code))
    name = errno.errorcode.get(code, str(code))
    where = f"{filename}: " if filename else ""
    if filename is None and message:  # Wrapped (tensorstore): name the file it names, else its first line.
        named = re.findall(r'(?:file|writing):? "([^"]+)"', message)
        where = (f"{named[-1]}: " if named else message.splitlines()[0][:200] + ": ")
    return f"cannot use the storage: {where}{kind} ({name}); {ADVICE}"


def call(fn, path: str):
    """`fn()`, with an OS error turned into a one-line StorageError about `path`."""
    try:
        return fn()
    except OSError as e:
        if e.filename is None:
            e.filename = path
        raise environment_error(e) from None


def make_directory(path: str) -> None:
    """`mkdir -p path`; a file in its place is a one-line StorageError naming it."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise StorageError(f"{path} is a file, not a directory; choose another path or move the file")
    call(lambda: os.makedirs(path, exist_ok=True), path)

