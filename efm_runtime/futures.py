"""A small Future for service calls, shaped like rclpy's (``done``, ``result``, ``add_done_callback``)."""
from __future__ import annotations

import threading
from typing import Any, Callable


class Future:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = False
        self._result: Any = None
        self._exception: BaseException | None = None
        self._callbacks: list[Callable[["Future"], None]] = []
        self._schedule: Callable[[Callable[[], None]], None] = lambda fn: fn()

    def done(self) -> bool:
        return self._done

    def result(self) -> Any:
        if self._exception is not None:
            raise self._exception
        return self._result

    def exception(self) -> BaseException | None:
        return self._exception

    def set_result(self, result: Any) -> None:
        self._finish(result, None)

    def set_exception(self, exception: BaseException) -> None:
        self._finish(None, exception)

    def add_done_callback(self, callback: Callable[["Future"], None]) -> None:
        with self._lock:
            if not self._done:
                self._callbacks.append(callback)
                return
        self._schedule(lambda: callback(self))

    def _finish(self, result: Any, exception: BaseException | None) -> None:
        with self._lock:
            if self._done:
                return
            self._result, self._exception, self._done = result, exception, True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            self._schedule(lambda cb=callback: cb(self))
