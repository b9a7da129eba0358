"""A reader that goes away early (``kms-conformance list | head -1``) is not an error.

Every command writes through ``PipeSafeStream``: once a write or flush finds the pipe
closed, standard output is pointed at /dev/null and the command carries on quietly, so
``run`` still writes its reports and each command exits with the status it would have had
with every line read (``list``: 0; ``check``: its verdict; ``run``: its verdict). No
BrokenPipeError traceback, no "Exception ignored" line at exit (README, "Exit status").
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, TextIO


class PipeSafeStream:
    """``stream`` (a text stream on a file descriptor), quiet once its reader is gone."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._gone()
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._gone()

    def _gone(self) -> None:
        self.reader_gone = True
        # What is still buffered would fail again at exit: the descriptor now leads nowhere.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def install() -> None:
    """Wrap ``sys.stdout`` and ``sys.stderr`` (once) for the rest of the process."""
    if not isinstance(sys.stdout, PipeSafeStream) and sys.stdout is not None:
        sys.stdout = PipeSafeStream(sys.stdout)
    if not isinstance(sys.stderr, PipeSafeStream) and sys.stderr is not None:
        sys.stderr = PipeSafeStream(sys.stderr)
