"""`python -m bot bench-telegram`: replies/s of the real Telegram front end against the strict fake
Bot API (tests/fake_bot_api.py), with Telegram's flood control (429 past 30 messages/s) on.

Many chats each send a few questions at once; the run measures how long until every reply arrived,
how many never did, how many 429s the fake answered, and per-question latency (push → reply).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from dataclasses import dataclass

from bot.chat import Chatbot
from bot.config import Settings

QUESTIONS = (
    "what causes weakness in my legs",
    "what is myasthenia gravis",
    "how is muscle weakness treated",
    "can vitamin deficiency make muscles weak",
    "what is ALS",
    "why are my arms weak after exercise",
)
TOKEN = "123456789:BENCHMARKbenchmarkBENCHMARKbench"


class FakeUnavailable(Exception):
    """tests/fake_bot_api.py cannot be imported (not run from the repository root)."""


def load_fake():
    try:
        from tests.fake_bot_api import FakeBotAPI
    except ImportError as error:
        raise FakeUnavailable(
            "bench-telegram needs tests/fake_bot_api.py: run it from the repository root"
        ) from error
    return FakeBotAPI


@dataclass
class BenchResult:
    expected: int
    delivered: int
    seconds: float
    rate_limited: int
    latencies: list[float]
    limiter: str

    @property
    def lost(self) -> int:
        return self.expected - self.delivered

    @property
    def replies_per_second(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]

    def line(self) -> str:
        return (
            f"telegram bench ({self.limiter} limiter): {self.replies_per_second:.1f} replies/s, "
            f"{self.delivered}/{self.expected} delivered, {self.lost} lost, {self.rate_limited} 429s seen, "
            f"latency p50 {self.percentile(0.5):.2f} s, p95 {self.percentile(0.95):.2f} s, "
            f"total {self.seconds:.1f} s"
        )


async def _run(chatbot: Chatbot, api, chats: int, per_chat: int, limiter: str, timeout: float) -> BenchResult:
    from bot.frontends.telegram import build_application, ptb_rate_limiter
    from bot.frontends.throttle import FloodGuard

    settings = Settings(telegram_token=api.token, api_base_url=f"{api.url}/bot")
    application = build_application(
        chatbot, settings,
        rate_limiter=ptb_rate_limiter() if limiter == "ptb" else None,
        flood=FloodGuard(limit=10_000),
    )
    chat_ids = [10_000 + index for index in range(chats)]
    pushed: dict[tuple[int, int], float] = {}
    async with application:
        await application.start()
        assert application.updater is not None
        await application.updater.start_polling(poll_interval=0.0, timeout=1)
        started = time.time()
        for round_ in range(per_chat):
            for index, chat_id in enumerate(chat_ids):
                pushed[(chat_id, round_)] = time.time()
                api.push_message(chat_id, QUESTIONS[(index + round_) % len(QUESTIONS)])
        expected = chats * per_chat
        try:
            await api.wait_for_async(lambda: len(api.sent) >= expected, timeout=timeout)
        except AssertionError:
            pass
        finished = max((m["time"] for m in api.sent), default=time.time())
        await application.updater.stop()
        await application.stop()
    latencies = []
    for chat_id in chat_ids:
        for round_, message in enumerate(m for m in api.sent if m["chat_id"] == chat_id):
            if (chat_id, round_) in pushed:
                latencies.append(message["time"] - pushed[(chat_id, round_)])
    return BenchResult(
        expected=chats * per_chat, delivered=min(len(api.sent), chats * per_chat),
        seconds=finished - started, rate_limited=api.rate_limited, latencies=latencies, limiter=limiter,
    )


def run_benchmark(
    chatbot: Chatbot, chats: int = 100, per_chat: int = 3, limiter: str = "sliding",
    rate: int = 30, timeout: float = 120.0,
) -> BenchResult:
    FakeBotAPI = load_fake()
    logging.getLogger("bot.frontends.telegram").setLevel(logging.WARNING)  # one line per reply otherwise
    with FakeBotAPI(TOKEN, rate_limit_per_second=rate) as api:
        return asyncio.run(_run(chatbot, api, chats, per_chat, limiter, timeout))
