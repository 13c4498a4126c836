"""Progress output: live status lines on a terminal, plain lines elsewhere."""

import io

from patchscale import progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_output_is_one_line_per_update(monkeypatch):
    monkeypatch.delenv("PATCHSCALE_PROGRESS", raising=False)
    out = io.StringIO()  # Not a TTY: a log file or CI.
    console = progress.Console(out)
    console.update("run", "[train] step 10/20")
    console.update("run", "[train] step 20/20")
    console.log("[sweep] a: finished")
    assert not console.live
    assert out.getvalue() == "[train] step 10/20\n[train] step 20/20\n[sweep] a: finished\n"


def test_live_output_redraws_the_status_lines_under_the_log(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("PATCHSCALE_PROGRESS", raising=False)
    out = Terminal()
    console = progress.Console(out)
    assert console.live
    console.update("sweep", "[sweep] " + progress.bar(1, 4) + " runs, ETA 3m00s")
    console.update("run", "[train] step 10/20")
    console.log("[sweep] run 2/4: b")
    console.update("run", "[train] step 20/20")
    # Replay the escape codes on a screen of lines: what the user sees at the end.
    screen = []
    for piece in out.getvalue().replace(progress.CLEAR_LINE, "").split("\n"):
        while piece.startswith(progress.UP):
            piece = piece[len(progress.UP):]
            screen.pop()
        screen.append(piece)
    assert screen[:-1] == ["[sweep] run 2/4: b", "[sweep] [######..................] 1/4 runs, ETA 3m00s",
                           "[train] step 20/20"]


def test_a_log_file_gets_plain_lines_even_from_a_terminal_session(monkeypatch):
    monkeypatch.setenv("PATCHSCALE_PROGRESS", "plain")
    assert not progress.Console(Terminal()).live
