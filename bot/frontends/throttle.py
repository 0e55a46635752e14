"""Flow control for the Telegram front end: per-user flood protection, Telegram's send limits, and
per-chat ordering of concurrent updates.

Three small pieces, each testable on its own:

* `FloodGuard` -- a user who sends `limit` messages in `window` seconds gets one polite notice
  for the last of them; further messages are ignored until the rolling window has room again.
* `FloodControlLimiter` -- a python-telegram-bot rate limiter that keeps sends under Telegram's
  ~30 messages/s (and 20/min per group) with a sliding window, and retries after a 429.
* `ChatOrderedUpdateProcessor` -- updates of different chats run concurrently; updates of one chat
  run one after the other, in the order they arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from typing import Any

from telegram import Update
from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter, BaseUpdateProcessor

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Per-user flood protection


class Verdict(enum.Enum):
    ALLOW = "allow"  # handle the message
    WARN = "warn"  # over the limit for the first time in this window: send the slow-down notice
    DROP = "drop"  # still over the limit: ignore silently


class FloodGuard:
    """A user's `limit`-th message within any rolling `window` seconds gets the slow-down notice.

    So at most `limit - 1` messages per user and window are answered. The `limit`-th gets
    `Verdict.WARN` (send one notice instead of an answer), later ones `Verdict.DROP` until the
    window has room again. Ignored messages are not counted, so a user
    who keeps typing is answered again as soon as their older messages leave the window.
    Memory is bounded: users idle for a whole window are forgotten.
    """

    def __init__(
        self, limit: int = 30, window: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 2 or window <= 0:
            raise ValueError("limit must be >= 2 and window > 0")
        self.limit = limit
        self.window = window
        self.clock = clock
        self._events: dict[Hashable, deque[float]] = {}
        self._warned: set[Hashable] = set()
        self._checks = 0

    def check(self, key: Hashable) -> Verdict:
        now = self.clock()
        self._checks += 1
        if self._checks % 1024 == 0:
            self._forget_idle(now)
        events = self._events.setdefault(key, deque())
        while events and now - events[0] >= self.window:
            events.popleft()
        if len(events) < self.limit - 1:
            events.append(now)
            self._warned.discard(key)
            return Verdict.ALLOW
        if key in self._warned:
            return Verdict.DROP
        self._warned.add(key)
        return Verdict.WARN

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, events in self._events.items() if not events or now - events[-1] >= self.window]:
            del self._events[key]
            self._warned.discard(key)

    def __len__(self) -> int:
        return len(self._events)


# ---------------------------------------------------------------------------------------------
# Telegram's send limits


def _counts_as_message(endpoint: str) -> bool:
    """Endpoints that Telegram counts against its ~30 messages/s flood limit."""
    name = endpoint.lower()
    if name in ("sendchataction",):
        return False
    return name.startswith(("send", "copymessage", "forwardmessage", "editmessage"))


@dataclass
class _Window:
    """A sliding window: completion times of recent requests plus those still in flight."""

    limit: int
    period: float
    done: deque[float] = field(default_factory=deque)
    in_flight: int = 0
    gate: asyncio.Lock = field(default_factory=asyncio.Lock)  # FIFO: first come, first served
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def room(self, now: float) -> float:
        """0 if a request may start now, else how long to wait at most before looking again."""
        while self.done and now - self.done[0] >= self.period:
            self.done.popleft()
        if len(self.done) + self.in_flight < self.limit:
            return 0.0
        return self.done[0] + self.period - now if self.done else self.period

    async def acquire(self, clock: Callable[[], float]) -> None:
        async with self.gate:
            while (wait := self.room(clock())) > 0:
                self.changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), timeout=max(wait, 0.001))
            self.in_flight += 1

    def release(self, now: float) -> None:
        # Stamped when the answer is back: Telegram accepted the message at some point before,
        # so a window counted from here is never shorter than Telegram's.
        self.in_flight -= 1
        self.done.append(now)
        self.changed.set()

    @property
    def idle(self) -> bool:
        return not self.in_flight and not self.done and not self.gate.locked()


class FloodControlLimiter(BaseRateLimiter[int]):
    """Keeps message sends within Telegram's flood limits and retries after a 429 `retry_after`.

    Unlike PTB's `AIORateLimiter` (a leaky bucket that lets a burst of 30 through and then 30 more
    in the same second, and that also counts chat actions), this uses a sliding window over the
    requests Telegram actually counts, with each request's slot held from start until its answer
    arrives. That sustains just under 30 replies/s without provoking 429s; a 429 that happens
    anyway (another process using the same token, a stricter server) pauses all sends for
    `retry_after` seconds and the request is retried, up to `max_retries` times.
    """

    def __init__(
        self,
        max_rate: int = 30,
        period: float = 1.0,
        group_max_rate: int = 20,
        group_period: float = 60.0,
        max_retries: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_rate = max_rate
        self.period = period
        self.group_max_rate = group_max_rate
        self.group_period = group_period
        self.max_retries = max_retries
        self.clock = clock
        self.retries = 0  # how many 429s were retried (for benchmarks and tests)
        self._window: _Window | None = None
        self._groups: dict[int | str, _Window] = {}
        self._paused_until = 0.0

    async def initialize(self) -> None:
        self._window = _Window(self.max_rate, self.period)

    async def shutdown(self) -> None:
        self._groups.clear()

    def _group_window(self, chat_id: Any) -> _Window | None:
        with contextlib.suppress(TypeError, ValueError):
            chat_id = int(chat_id)
        is_group = isinstance(chat_id, str) or (isinstance(chat_id, int) and chat_id < 0)
        if not is_group or not self.group_max_rate:
            return None
        if len(self._groups) > 512:
            now = self.clock()
            for key in [k for k, w in self._groups.items() if w.room(now) == 0.0 and w.idle]:
                del self._groups[key]
        window = self._groups.get(chat_id)
        if window is None:
            window = self._groups[chat_id] = _Window(self.group_max_rate, self.group_period)
        return window

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        if not _counts_as_message(endpoint) or data.get("allow_paid_broadcast"):
            return await callback(*args, **kwargs)
        if self._window is None:
            await self.initialize()
        assert self._window is not None
        max_retries = self.max_retries if rate_limit_args is None else rate_limit_args
        group = self._group_window(data.get("chat_id"))
        for attempt in range(max_retries + 1):
            while (pause := self._paused_until - self.clock()) > 0:
                await asyncio.sleep(pause)
            acquired: list[_Window] = []
            try:
                for window in (group, self._window):
                    if window is not None:
                        await window.acquire(self.clock)
                        acquired.append(window)
                return await callback(*args, **kwargs)
            except RetryAfter as error:
                if attempt >= max_retries:
                    logger.error("flood control: giving up after %d retries", max_retries)
                    raise
                self.retries += 1
                with warnings.catch_warnings():  # PTB 22 warns that this becomes a timedelta
                    warnings.simplefilter("ignore")
                    wait = error.retry_after
                seconds = wait.total_seconds() if hasattr(wait, "total_seconds") else float(wait)
                self._paused_until = max(self._paused_until, self.clock() + seconds + 0.05)
                logger.info("flood control: Telegram asked to wait %.1f s; retrying", seconds)
            finally:
                now = self.clock()
                for window in acquired:
                    window.release(now)
        raise AssertionError("unreachable")  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# Concurrency with per-chat ordering


class ChatOrderedUpdateProcessor(BaseUpdateProcessor):
    """Processes updates of different chats concurrently and those of one chat in arrival order.

    PTB starts one task per update, in arrival order. Each task takes its chat's lock (asyncio
    locks are FIFO) and only then one of `max_concurrent_chats` slots, so updates waiting behind
    their own chat never hold a slot that another chat could use.
    """

    def __init__(self, max_concurrent_chats: int = 64, max_pending_updates: int = 4096) -> None:
        super().__init__(max_pending_updates)
        self.max_concurrent_chats = max_concurrent_chats
        self._slots: asyncio.Semaphore | None = None
        self._chats: dict[Hashable, list[Any]] = {}  # chat id -> [lock, number of users]

    async def initialize(self) -> None:
        self._slots = asyncio.Semaphore(self.max_concurrent_chats)

    async def shutdown(self) -> None:
        self._chats.clear()

    @staticmethod
    def chat_key(update: object) -> Hashable | None:
        if isinstance(update, Update):
            if update.effective_chat is not None:
                return update.effective_chat.id
            if update.effective_user is not None:
                return ("user", update.effective_user.id)
        return None

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        if self._slots is None:
            await self.initialize()
        assert self._slots is not None
        key = self.chat_key(update)
        if key is None:
            async with self._slots:
                await coroutine
            return
        entry = self._chats.get(key)
        if entry is None:
            entry = self._chats[key] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0], self._slots:
                await coroutine
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._chats.pop(key, None)
