"""The player worker: newest intent wins, failures retried when the backend says when."""

from __future__ import annotations

import threading
import time

from device.player import Intent, PlayerError
from device.status import StatusBoard
from device.worker import PlayerWorker
from tests.waiting import wait_until


class SlowPlayer:
    """A player whose calls take time and can be told to fail."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.applied: list[Intent] = []
        self.failures: list[PlayerError] = []
        self.calls = threading.Semaphore(0)

    def apply(self, intent: Intent) -> None:
        time.sleep(self.delay)
        self.calls.release()
        if self.failures:
            raise self.failures.pop(0)
        self.applied.append(intent)

    def next_track(self) -> None:
        pass

    def pause(self) -> None:
        pass

    def close(self) -> None:
        pass


def play(mood: str) -> Intent:
    return Intent(play=True, mood=mood, context_uri=f"spotify:playlist:{mood}0000000000")


def settle(player: SlowPlayer, calls: int, timeout: float = 5.0) -> None:
    for _ in range(calls):
        assert player.calls.acquire(timeout=timeout), "the player was not called in time"


def test_a_burst_while_the_player_is_slow_ends_in_one_call_for_the_last() -> None:
    player = SlowPlayer(delay=0.3)
    worker = PlayerWorker(player, StatusBoard())
    worker.start()
    try:
        worker.want(play("happy"))
        time.sleep(0.05)  # the first call is under way
        for mood in ("sad", "angry", "fear", "surprise"):
            worker.want(play(mood))
        settle(player, 2)
        assert not player.calls.acquire(timeout=0.5)
    finally:
        worker.stop()
    assert [i.mood for i in player.applied] == ["happy", "surprise"]


def test_a_retryable_failure_is_retried_after_the_delay_it_names() -> None:
    player = SlowPlayer()
    player.failures.append(PlayerError("rate limited", retry_after=0.3))
    status = StatusBoard()
    worker = PlayerWorker(player, status)
    worker.start()
    try:
        started = time.monotonic()
        worker.want(play("happy"))
        settle(player, 1)
        # the call has failed; the worker records why just after
        wait_until(lambda: status.get("player_state") == "waiting", "the waiting state")
        assert status.get("player_detail") == "rate limited"
        settle(player, 1)
        assert time.monotonic() - started >= 0.3
    finally:
        worker.stop()
    assert [i.mood for i in player.applied] == ["happy"]


def test_a_permanent_failure_waits_for_a_new_intent() -> None:
    player = SlowPlayer()
    player.failures.append(PlayerError("Premium required"))
    status = StatusBoard()
    worker = PlayerWorker(player, status)
    worker.start()
    try:
        worker.want(play("happy"))
        settle(player, 1)
        wait_until(lambda: status.get("player_state") == "error", "the error state")
        assert not player.calls.acquire(timeout=0.3)  # not retried
        worker.want(play("sad"))
        settle(player, 1)
    finally:
        worker.stop()
    assert [i.mood for i in player.applied] == ["sad"]
