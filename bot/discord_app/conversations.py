"""Conversation history per thread, in memory: what a follow-up in a thread is a follow-up to.

Why in memory and bounded: history only sharpens follow-ups, so losing it on restart is acceptable, and a
long-running bot must not grow without limit (old threads are forgotten first, long threads keep their last turns).
"""

from __future__ import annotations

from collections import OrderedDict, deque

from bot.types import Turn

MAX_TURNS = 6
MAX_THREADS = 1000


class Conversations:
    """thread id -> the last `max_turns` turns, for at most `max_threads` threads (least recently used dropped)."""

    def __init__(self, max_turns: int = MAX_TURNS, max_threads: int = MAX_THREADS) -> None:
        self.max_turns = max_turns
        self.max_threads = max_threads
        self._threads: OrderedDict[int, deque[Turn]] = OrderedDict()

    def __contains__(self, thread_id: object) -> bool:
        return thread_id in self._threads

    def __len__(self) -> int:
        return len(self._threads)

    def start(self, thread_id: int) -> None:
        """Mark a thread as ours, so later messages in it are follow-ups even before its first answer."""
        self._touch(thread_id)

    def history(self, thread_id: int) -> list[Turn]:
        """The turns so far, oldest first (empty for an unknown thread)."""
        turns = self._threads.get(thread_id)
        return list(turns) if turns is not None else []

    def add(self, thread_id: int, turn: Turn) -> None:
        self._touch(thread_id).append(turn)

    def _touch(self, thread_id: int) -> deque[Turn]:
        turns = self._threads.get(thread_id)
        if turns is None:
            turns = self._threads[thread_id] = deque(maxlen=self.max_turns)
            while len(self._threads) > self.max_threads:
                self._threads.popitem(last=False)
        self._threads.move_to_end(thread_id)
        return turns
