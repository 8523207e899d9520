"""A long-running peer process (baresip, linphonec, socat, tcpdump) with its output captured.

Output goes to a log file and an in-memory buffer that `wait_for` searches, so a test waits for
what the peer says ("200 OK () [1 binding]") instead of sleeping. Every wait has a deadline; `stop`
ends the process it started (SIGTERM, then SIGKILL) and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class PeerProcess:
    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        stdin_pipe: bool = False,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.stdin_pipe = stdin_pipe
        self.proc: asyncio.subprocess.Process | None = None
        self._chunks: list[str] = []
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    @property
    def output(self) -> str:
        """Everything the process printed so far, ANSI colours removed."""
        return ANSI.sub("", "".join(self._chunks))

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=asyncio.subprocess.PIPE if self.stdin_pipe else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: signals to us do not reach it
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.log_path, "ab") as log:
            while True:
                data = await self.proc.stdout.read(65536)
                if not data:
                    break
                log.write(data)
                log.flush()
                self._chunks.append(data.decode("utf-8", "replace"))
                self._changed.set()
        self._changed.set()

    async def wait_for(self, pattern: str, timeout: float, *, count: int = 1) -> re.Match[str]:
        """Wait until `pattern` (a regex) has appeared `count` times in the output."""
        regex = re.compile(pattern)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            matches = list(regex.finditer(self.output))
            if len(matches) >= count:
                return matches[count - 1]
            if self._reader is not None and self._reader.done():
                raise RuntimeError(
                    f"{self.argv[0]} exited ({self.returncode}) before printing {pattern!r}:\n"
                    f"{self.output[-3000:]}"
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"{self.argv[0]} did not print {pattern!r} within {timeout}s:\n{self.output[-3000:]}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def send_line(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None, (
            "started with stdin_pipe=True?"
        )
        self.proc.stdin.write((line + "\n").encode())
        await self.proc.stdin.drain()

    async def stop(self, grace: float = 3.0, sig: int = signal.SIGTERM) -> int:
        if self.proc is None:
            return 0
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 2)
        return self.proc.returncode or 0

    async def wait(self, timeout: float) -> int:
        assert self.proc is not None
        await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 2)
        return self.proc.returncode or 0
