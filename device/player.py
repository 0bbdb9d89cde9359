"""The player boundary: what should be playing, and the backends that make it so.

The daemon only ever says what it wants (an `Intent`); a backend (`dry-run` here,
`spotify` in device/spotify.py) makes it so. Backends are slow and fallible, so they
are driven by `device.worker.PlayerWorker`, never from the analysis loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from device.config import Config
from device.status import StatusBoard

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Intent:
    """The wanted playback state. Only the newest intent matters."""

    play: bool  # False: pause (nobody there, auto-play off)
    mood: str | None = None  # the mood whose music should play
    context_uri: str = ""  # what to play for it; "" keeps whatever plays
    reason: str = ""
    handover: frozenset[tuple[str, str]] = field(default=frozenset(), compare=False)
    """(context URI, speaker) that other Mood Melodies of the home started on the account: this
    device drives now, so it may take that music over (device.coordination)."""


class PlayerError(Exception):
    """A backend could not do what was asked.

    `retry_after` (seconds) says when trying again makes sense; None means it will not
    help until something changes (a new login, a new setting).
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Player(Protocol):
    def apply(self, intent: Intent) -> None:
        """Make playback match `intent`; raise PlayerError when it cannot (yet)."""

    def next_track(self) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None:
        """Play on the speaker again (the Play button, after Pause)."""

    def close(self) -> None: ...


class DryRunPlayer:
    """Logs what it would play; the default until Spotify is linked."""

    def __init__(self, status: StatusBoard) -> None:
        self._status = status

    def apply(self, intent: Intent) -> None:
        if intent.play:
            logger.info(
                "dry-run player: play mood=%s context=%s (%s)",
                intent.mood,
                intent.context_uri or "-",
                intent.reason,
            )
            self._status.update(
                player_state="playing",
                now_playing={
                    "context_uri": intent.context_uri,
                    "name": intent.mood or "",
                    "device": "dry-run",
                },
            )
        else:
            logger.info("dry-run player: pause (%s)", intent.reason)
            self._status.update(player_state="paused")

    def next_track(self) -> None:
        logger.info("dry-run player: next track")

    def pause(self) -> None:
        logger.info("dry-run player: pause (button)")
        self._status.update(player_state="paused")

    def resume(self) -> None:
        logger.info("dry-run player: play (button)")
        self._status.update(player_state="playing")

    def close(self) -> None:
        pass


def make_player(config: Config, status: StatusBoard, state_dir: Path) -> Player:
    """The backend that `[player] kind` names."""
    status.update(player=config.player.kind)
    if config.player.kind == "spotify":
        from device.spotify import SpotifyPlayer  # spotipy only when used

        return SpotifyPlayer(config, status, state_dir)
    return DryRunPlayer(status)
