"""The player worker: runs slow, fallible player calls off the analysis loop.

It keeps only the newest wanted state: a burst of intents while the player is slow
ends in one call for the last of them. Failures are retried when the backend says
when (`PlayerError.retry_after`), and reported in the status either way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from device.player import Intent, Player, PlayerError
from device.status import StatusBoard

logger = logging.getLogger(__name__)


class PlayerWorker:
    def __init__(self, player: Player, status: StatusBoard) -> None:
        self._player = player
        self._status = status
        self._cond = threading.Condition()
        self._wanted: Intent | None = None
        self._applied: Intent | None = None
        self._commands: deque[Callable[[], None]] = deque()
        self._stopping = False
        self._retry_at = 0.0  # monotonic time before which a failed intent is not retried
        self._thread = threading.Thread(target=self._run, name="player", daemon=True)

    @property
    def player(self) -> Player:
        return self._player

    def start(self) -> None:
        self._thread.start()

    def want(self, intent: Intent) -> None:
        """Ask for `intent`; it replaces any intent not yet applied."""
        with self._cond:
            self._wanted = intent
            self._cond.notify()

    def command(self, action: Callable[[], None]) -> None:
        """Run a one-off player action (next track, pause) on the worker."""
        with self._cond:
            self._commands.append(action)
            self._cond.notify()

    def stand_by(self) -> None:
        """Leave playback alone from now on (another Mood Melody drives the account): nothing
        is wanted, so the next intent is applied afresh, even one equal to the last."""
        with self._cond:
            self._wanted = self._applied = None
            self._retry_at = 0.0

    def replace_player(self, player: Player) -> None:
        """Swap the backend (after a settings change); the wanted state is applied anew."""
        with self._cond:
            old, self._player = self._player, player
            self._applied = None
            self._cond.notify()
        old.close()

    def stop(self, timeout: float = 3.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._player.close()

    def _next_job(self) -> Callable[[], None] | Intent | None:
        """Wait for a command, or for a wanted intent not yet applied whose retry time has come."""
        with self._cond:
            while not self._stopping:
                if self._commands:
                    return self._commands.popleft()
                if self._wanted is None or self._wanted == self._applied:
                    self._cond.wait()
                    continue
                delay = self._retry_at - time.monotonic()
                if delay <= 0:
                    return self._wanted
                self._cond.wait(delay)
            return None

    def _run(self) -> None:
        while (job := self._next_job()) is not None:
            try:
                if isinstance(job, Intent):
                    self._player.apply(job)
                    self._applied, self._retry_at = job, 0.0
                    self._status.update(player_detail="")
                else:
                    job()
            except PlayerError as err:
                again = "" if err.retry_after is None else f" (retrying in {err.retry_after:.0f} s)"
                logger.warning("player: %s%s", err, again)
                self._status.update(
                    player_state="error" if err.retry_after is None else "waiting",
                    player_detail=str(err),
                )
                if isinstance(job, Intent):
                    if err.retry_after is None:
                        self._applied = job  # pointless to retry until something changes
                    else:
                        self._retry_at = time.monotonic() + err.retry_after
            except Exception:
                logger.exception("player call failed")
                if isinstance(job, Intent):
                    self._applied = job
