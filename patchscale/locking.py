"""Exclusive locks on run and results directories, so that no run is ever trained by two processes.

Two trains, two sweeps, or a sweep and a train on one directory would otherwise interleave
their writes (one truncating metrics.jsonl under the other, checkpoints saved twice). The lock
is `fcntl.flock` on `<dir>/.lock`: the kernel releases it when its holder dies, so a lock left
by a killed process is taken over by itself. The file holds the holder's pid and host, which a
refusal names. Where the filesystem has no flock (some network filesystems), the lock is an
O_EXCL file `<dir>/.lock.held` whose holder rewrites it every `HEARTBEAT_S` seconds; one whose
heartbeat is older than `STALE_S` (or whose holder on this host is dead) is taken over.
Object stores (gs://) have neither; only process 0 of a multi-process run takes a lock.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import threading
import time

from patchscale import storage
from patchscale.errors import UserError

LOCK = ".lock"
HEARTBEAT_S = 10.0
STALE_S = 60.0
NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_warned_no_flock = False


class Held(UserError):
    """Another live process holds the lock: one line naming it."""


def _holder_text() -> str:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()})


def _describe_holder(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"process {holder['pid']} on host {holder['host']}"
    except (ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def hold(directory, what: str, name: str = LOCK):
    """Hold the exclusive lock of `directory` (created if missing) for the `with` block.

    `what` says what is locked ("run", "sweep's results directory") in the refusal; `name` is the
    lock file's (the shards of one sweep lock separately). A directory this
    call created and that is empty again afterwards is removed, so a run that failed early
    leaves nothing behind.
    """
    path = os.fspath(directory)
    if "://" in path:  # An object store: no locks exist there (docs/reproducibility.md).
        yield
        return
    created = not os.path.isdir(path)
    storage.make_directory(path)
    try:
        with _flock_or_fallback(path, what, name):
            yield
    finally:
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(path)  # Only if empty: a run that wrote nothing but its lock.


@contextlib.contextmanager
def _flock_or_fallback(directory: str, what: str, name: str):
    lock_path = os.path.join(directory, name)
    while True:
        fd = storage.call(lambda: os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644), lock_path)
        try:
            import fcntl  # Here, not at the top: a platform without it takes the fallback below.

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(_read(fd))
            os.close(fd)
            raise Held(f"{directory}: this {what} is in use by {holder} (lock {lock_path});"
                       " wait for it to finish or stop it") from None
        except (ImportError, OSError) as e:
            os.close(fd)
            if isinstance(e, OSError) and e.errno not in NO_FLOCK:
                raise
            with contextlib.suppress(OSError):
                os.unlink(lock_path)  # Unused without flock.
            with _exclusive_file(directory, what, name + ".held"):
                yield
            return
        if _same_file(fd, lock_path):
            break
        os.close(fd)  # Its holder removed it while we waited for it: lock the new one.
    try:
        storage.call(lambda: _write(fd, _holder_text()), lock_path)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)  # Still held: whoever opens the path next creates a new file.
        os.close(fd)


def _same_file(fd: int, path: str) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 4096).decode("utf-8", "replace")


def _write(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, text.encode())
    os.fsync(fd)


# ----------------------------------------------------------------------------- without flock
@contextlib.contextmanager
def _exclusive_file(directory: str, what: str, name: str):
    """The fallback lock: an O_EXCL file with a heartbeat, taken over when its holder is gone."""
    global _warned_no_flock
    if not _warned_no_flock:
        print(f"patchscale: warning: {directory} does not support flock; locking with {name} and a"
              f" {HEARTBEAT_S:.0f}s heartbeat instead", file=sys.stderr, flush=True)
        _warned_no_flock = True
    path = os.path.join(directory, name)
    for _ in range(2):  # A second try after taking over a stale lock.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            text, age = _read_fallback(path)
            if not _stale(text, age):
                raise Held(f"{directory}: this {what} is in use by {_describe_holder(text)} (lock {path};"
                           f" heartbeat {age:.0f}s ago); wait for it to finish or stop it") from None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    else:
        raise Held(f"{directory}: another process took the stale lock {path} at the same time; try again")
    _write(fd, _holder_text())
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(fd, stop), daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _read_fallback(path: str) -> tuple[str, float]:
    try:
        with open(path) as f:
            text = f.read()
        return text, time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return "", STALE_S + 1


def _stale(text: str, age: float) -> bool:
    """No heartbeat for STALE_S, or a holder on this host that no longer exists."""
    if age > STALE_S:
        return True
    try:
        holder = json.loads(text)
    except ValueError:
        return False  # Being written right now.
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, ValueError, TypeError):
        return False
    return False


def _heartbeat(fd: int, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        with contextlib.suppress(OSError):
            _write(fd, _holder_text())
