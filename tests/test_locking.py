"""Run and results directories are locked: a second process is refused with one line naming the holder."""

import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from patchscale import locking
from tests.conftest import REPO

HOLD = """
import sys, time
from patchscale import locking
with locking.hold(sys.argv[1], "run"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_second_holder_is_refused_naming_pid_and_host(tmp_path):
    with locking.hold(tmp_path / "run", "run"):
        with pytest.raises(locking.Held) as e:
            with locking.hold(tmp_path / "run", "run"):
                pass
    message = str(e.value)
    assert f"process {os.getpid()} on host {socket.gethostname()}" in message and "\n" not in message
    with locking.hold(tmp_path / "run", "run"):  # Released: taken again.
        pass


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(locking.Held, match=f"process {holder.pid} on host"):
            with locking.hold(run, "run"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run / locking.LOCK).exists()  # Left behind by the kill, and free.
    with locking.hold(run, "run"):
        assert json.loads((run / locking.LOCK).read_text())["pid"] == os.getpid()


def test_a_directory_the_lock_created_is_removed_when_nothing_else_was_written(tmp_path):
    with locking.hold(tmp_path / "new", "run"):
        assert (tmp_path / "new" / locking.LOCK).exists()
    assert not (tmp_path / "new").exists()
    with locking.hold(tmp_path / "kept", "run"):
        (tmp_path / "kept" / "config.json").write_text("{}")
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["config.json"]


def test_shards_lock_separately(tmp_path):
    with locking.hold(tmp_path, "sweep", name=".lock-shard-0-of-2"):
        with locking.hold(tmp_path, "sweep", name=".lock-shard-1-of-2"):
            pass


@pytest.fixture
def no_flock(monkeypatch, capsys):
    def refuse(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refuse)
    monkeypatch.setattr(locking, "_warned_no_flock", False)
    yield
    capsys.readouterr()


def test_without_flock_an_exclusive_file_locks_and_says_so_once(tmp_path, no_flock, capsys):
    with locking.hold(tmp_path, "run"):
        assert (tmp_path / ".lock.held").exists() and not (tmp_path / locking.LOCK).exists()
        with pytest.raises(locking.Held, match=f"process {os.getpid()} on host .*heartbeat"):
            with locking.hold(tmp_path, "run"):
                pass
    assert not (tmp_path / ".lock.held").exists()
    with locking.hold(tmp_path, "run"):
        pass
    assert capsys.readouterr().err.count("does not support flock") == 1


def test_without_flock_a_dead_or_silent_holder_is_taken_over(tmp_path, no_flock):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    held = tmp_path / ".lock.held"
    held.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "time": 0}))
    with locking.hold(tmp_path, "run"):  # Its holder on this host is gone.
        assert json.loads(held.read_text())["pid"] == os.getpid()
    held.write_text(json.dumps({"pid": 1, "host": "elsewhere", "time": 0}))
    with pytest.raises(locking.Held, match="process 1 on host elsewhere"):
        with locking.hold(tmp_path, "run"):
            pass
    old = time.time() - locking.STALE_S - 5
    os.utime(held, (old, old))  # No heartbeat for longer than STALE_S.
    with locking.hold(tmp_path, "run"):
        pass
