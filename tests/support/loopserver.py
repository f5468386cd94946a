"""An aiohttp server in its own thread and event loop, for the fakes at the boundaries
(tests/support/fake_botapi.py, tests/support/znuny.py): the code under test talks HTTP to it
from any thread or process; tests use it as a context manager."""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

from aiohttp import web


class LoopServer(ABC):
    """Subclasses build their `web.Application` in `_application()` (run in the loop)."""

    thread_name = "fake-server"
    shutdown_timeout = 2.0

    def __init__(self) -> None:
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @abstractmethod
    def _application(self) -> web.Application:
        """The server's routes."""

    async def _before_stop(self) -> None:  # noqa: B027 (optional hook, nothing by default)
        """Release what waits in the loop (long polls) before the server shuts down."""

    def start(self) -> Self:
        """Start the thread and the server; return once it is listening."""
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=self._run_loop, name=self.thread_name, daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start_server(), loop).result(10)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Shut the server down and join the thread (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._stop_server(), loop).result(10)
            finally:
                loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        if not loop.is_running():
            loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run_loop(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    async def _start_server(self) -> None:
        self._runner = web.AppRunner(
            self._application(), access_log=None, shutdown_timeout=self.shutdown_timeout
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])

    async def _stop_server(self) -> None:
        await self._before_stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
