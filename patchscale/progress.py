"""Progress output: live status lines on a terminal, plain lines everywhere else.

On a terminal (stdout is a TTY and TERM is not `dumb`) the sweep's overall bar and ETA and the
current run's progress are two lines redrawn in place (cut to the terminal's width), and
lasting messages (a run finished or failed, warnings) scroll above them. Output that bypasses
the console (other libraries' logging) can leave a stale status line behind; set
`PATCHSCALE_PROGRESS=plain` where that matters. Anywhere else (CI, log files, `| tee`) every
update is its own plain line, as a log should be. `PATCHSCALE_PROGRESS=plain|live` overrides
the choice.
"""

from __future__ import annotations

import os
import shutil
import sys

CLEAR_LINE = "\x1b[2K"
UP = "\x1b[1A"


def format_duration(seconds: float) -> str:
    """12m05s, or 3h07m past an hour."""
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def bar(done: int, total: int, width: int = 24) -> str:
    """A text bar: `[#########...............] 3/8`."""
    filled = round(width * done / total) if total else width
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


class Console:
    """Live status lines (keyed, e.g. "run" and "sweep") under a scrolling log."""

    def __init__(self, stream=None, live: bool | None = None):
        self.stream = stream or sys.stdout
        if live is None:
            choice = os.environ.get("PATCHSCALE_PROGRESS", "")
            live = choice == "live" or (choice != "plain" and _is_terminal(self.stream))
        self.live = live
        self.status: dict[str, str] = {}
        self.drawn = 0  # Status lines currently on screen.

    def log(self, text: str, file=None, flush: bool = True) -> None:
        """A lasting line (on `file`, e.g. sys.stderr for warnings), above the status lines."""
        del flush  # Always flushed; accepted so that print calls convert one for one.
        if not self.live:
            print(text, file=file or self.stream, flush=True)
            return
        self._erase()
        self.stream.flush()
        print(text, file=file or self.stream, flush=True)
        self._draw()

    def update(self, key: str, text: str) -> None:
        """Replace the status line `key` (a plain line when not live)."""
        if not self.live:
            print(text, file=self.stream, flush=True)
            return
        self.status[key] = text
        self._erase()
        self._draw()

    def clear(self, key: str) -> None:
        if self.status.pop(key, None) is not None and self.live:
            self._erase()
            self._draw()

    def _erase(self) -> None:
        self.stream.write((UP + CLEAR_LINE) * self.drawn)
        self.drawn = 0

    def _draw(self) -> None:
        columns = shutil.get_terminal_size().columns - 1  # One row per line, or the erase miscounts.
        for text in self.status.values():
            self.stream.write(CLEAR_LINE + text[:columns] + "\n")
        self.drawn = len(self.status)
        self.stream.flush()


def _is_terminal(stream) -> bool:
    return hasattr(stream, "isatty") and stream.isatty() and os.environ.get("TERM", "") != "dumb"


_console: Console | None = None


def console() -> Console:
    """The process's console, created on first use (so tests can swap stdout before)."""
    global _console
    if _console is None or _console.stream is not sys.stdout:
        _console = Console()
    return _console
