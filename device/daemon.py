"""The daemon: camera → faces → emotions → mood machine → player, MQTT and the setup page.

Threads, plainly: the capture thread fills a one-slot mailbox; the analysis loop (the
main thread) takes the newest frame at its own pace; the player worker makes the slow
Spotify calls; paho-mqtt and waitress run their own threads; a watchdog thread pings
systemd only while the analysis loop makes progress. Everyone watches one stop Event.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from operator import methodcaller
from typing import Any

import cv2

from device.calibration import load_reference
from device.camera import Capture, describe_moment, open_source
from device.config import Config, ConfigError
from device.controller import Controller
from device.coordinator import Coordinator
from device.detector import Face
from device.identity import device_id
from device.mood import MoodChanged, MoodMachine, MoodSettings, PresenceChanged, combine_faces
from device.pipeline import Analyser
from device.placement import draw_preview
from device.player import Intent, Player, make_player
from device.sdnotify import Notifier, watchdog_interval
from device.status import StatusBoard
from device.teach import CalibrationService, model_id
from device.worker import PlayerWorker

logger = logging.getLogger(__name__)

NO_FRAMES_AFTER_S = 1.0  # no frame for this long: nobody is seen (the clock goes on)


@dataclass(frozen=True)
class RunOptions:
    fast: bool = False  # replay a file flat out, stamping frames with media time
    loop: bool = False  # replay a file forever


class Watchdog:
    """Pings systemd's watchdog only while the analysis loop reports progress."""

    def __init__(self, notifier: Notifier, interval: float, status: StatusBoard) -> None:
        self._notifier = notifier
        self._interval = interval
        self._status = status
        self._last_beat = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    def beat(self) -> None:
        """Called by the analysis loop on every turn."""
        self._last_beat = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def _run(self) -> None:
        stalled = False
        while not self._stop.wait(self._interval):
            stalled_for = time.monotonic() - self._last_beat
            if stalled_for < 2 * self._interval:
                stalled = False
                self._notifier.notify(WATCHDOG=1, STATUS=status_line(self._status.snapshot()))
            elif not stalled:
                stalled = True
                logger.error(
                    "analysis loop stalled for %.1f s: withholding watchdog pings", stalled_for
                )


def status_line(status: dict[str, Any]) -> str:
    """The one line `systemctl status` shows."""
    mood = status["override"] or status["mood"] or "none yet"
    who = "someone there" if status["present"] else "nobody there"
    if status["presence_detail"]:
        who += f" ({status['presence_detail']})"
    return (
        f"mood {mood}, {who}, {status['fps']:.1f} fps, camera {status['camera_state']}, "
        f"player {status['player_state']}"
    )


class Daemon:
    def __init__(self, controller: Controller, options: RunOptions = RunOptions()) -> None:
        self.controller = controller
        self.status = controller.status
        self.options = options
        self.stop_event = threading.Event()
        config = controller.config
        self.state_dir = config.state_dir()
        self.notifier = Notifier()
        self.analyser: Analyser | None = None
        self.machine: MoodMachine | None = None
        self.calibration: CalibrationService | None = None  # made with the emotion model
        self.capture = self._make_capture(config)
        self.worker = PlayerWorker(make_player(config, self.status, self.state_dir), self.status)
        self.device_id = device_id(self.state_dir)
        self.coordinator = Coordinator(self.device_id, lambda: self.controller.config, self.status)
        self.coordinator.on_change(lambda _decision: self._reconsider())
        self._last_intent: Intent | None = None
        self._intent_lock = threading.RLock()
        self._stoppers: list[Callable[[], Any]] = []  # MQTT bridge, web servers
        self._last_view: tuple[Any, list[Face]] | None = None  # for the preview, in memory
        self._clip_time: float | None = None  # the analysed frame's place in its file
        controller.on_config_change(self._apply_config)
        for action, method in (
            ("next_track", "next_track"),
            ("pause", "pause"),
            ("play", "resume"),
        ):
            controller.on_action(action, functools.partial(self._press, methodcaller(method)))
        controller.on_action("override", self._reconsider)

    def _press(self, call: Callable[[Player], None]) -> None:
        """A player button: `call` runs on the worker, on the player current by then."""
        self.worker.command(lambda: call(self.worker.player))

    def _make_capture(self, config: Config) -> Capture:
        camera = config.camera

        def opener() -> Any:
            return open_source(
                camera.source,
                camera.width,
                camera.height,
                camera.fps,
                realtime=not self.options.fast,
            )

        capture = Capture(opener, self.status, lossless=self.options.fast, loop=self.options.loop)
        capture.set_enabled(camera.enabled)
        return capture

    # Start-up and shut-down

    def load_models(self) -> bool:
        from device.checks import missing_model

        config = self.controller.config
        try:
            if problem := missing_model(config):
                raise FileNotFoundError(problem)
            self.analyser = Analyser.from_config(config)
        except Exception as err:
            logger.error("models: %s (the device keeps running; fix the [models] settings)", err)
            self.status.update(model=f"error: {err}")
            return False
        self.machine = MoodMachine(self.analyser.labels, MoodSettings.from_config(config.mood))
        classifier = self.analyser.classifier
        model = config.model_path("emotion")
        self.calibration = CalibrationService(
            self.state_dir,
            classifier.labels,
            model_id(model, classifier.has_features),
            self.status,
            reference=load_reference(model) if classifier.has_features else None,
        )
        self.calibration.register(self.controller)
        self.status.update(model=self.analyser.classifier.describe())
        logger.info("models loaded: %s", self.analyser.classifier.describe())
        return True

    def start_services(self) -> None:
        """MQTT (it idles while disabled, so the page can turn it on), the setup page and
        the HTTPS Spotify login callback."""
        from device.mqtt import MqttBridge

        config = self.controller.config
        advertised = setup_url(config) if config.web.enabled else ""  # no page: no link to it
        bridge = MqttBridge(
            self.controller, self.device_id, advertised, coordinator=self.coordinator
        )
        bridge.start()
        self._stoppers.append(bridge.stop)
        if not config.web.enabled:
            return
        from device.callback_server import start_callback_server
        from device.spotify_auth import SpotifyAuth
        from web_config.server import start_web

        try:
            web = start_web(self.controller, self.state_dir, snapshot=self.snapshot)
            self._stoppers.append(web.stop)
        except OSError as err:
            logger.error("setup page: cannot listen on %s: %s", config.web.listen, err)
        try:
            callback = start_callback_server(
                lambda: SpotifyAuth(self.controller.config, self.state_dir),
                config.spotify.callback_listen,
                setup_url(config) + "/spotify",
                self.controller.spotify_linked,
            )
            self._stoppers.append(callback.shutdown)
        except OSError as err:
            logger.error(
                "Spotify login callback: cannot listen on %s: %s",
                config.spotify.callback_listen,
                err,
            )

    def snapshot(self) -> bytes | None:
        """The last analysed frame as JPEG with the faces boxed, their distance, and advice on
        placing the camera (faces too small, at the edge), for the page's preview.

        Built on request, in memory, only when the user allowed the preview; never stored.
        """
        last = self._last_view
        if last is None or not self.controller.config.web.preview:
            return None
        rgb, faces = last
        bgr = draw_preview(rgb, faces, self.controller.config.camera.hfov_deg)
        ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 80])
        return jpeg.tobytes() if ok else None

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; SIGHUP reloads the configuration."""
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_reload_signal)
        self.load_models()
        self.worker.start()
        self.start_services()
        self.capture.start()
        self._wait(self.capture.first_attempt, 10.0)  # READY once the camera was tried
        watchdog = None
        interval = watchdog_interval()
        if interval:
            watchdog = Watchdog(self.notifier, interval, self.status)
            watchdog.start()
        self.notifier.notify(READY=1, STATUS=status_line(self.status.snapshot()))
        logger.info("running: %s", status_line(self.status.snapshot()))
        try:
            self._analysis_loop(watchdog)
        finally:
            self.notifier.notify(STOPPING=1)
            logger.info("stopping")
            if watchdog:
                watchdog.stop()
            self.capture.stop()
            for stop in self._stoppers:
                stop()
            self.worker.stop()
            self.notifier.close()
        return 0

    def _wait(self, event: threading.Event, timeout: float) -> bool:
        """Wait for `event` at most `timeout` seconds, but never past a stop request."""
        deadline = time.monotonic() + timeout
        while not event.is_set() and not self.stop_event.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.stop_event.wait(min(left, 0.05))
        return event.is_set()

    def _on_stop_signal(self, signum: int, _frame: Any) -> None:
        logger.info("received %s", signal.Signals(signum).name)
        self.stop_event.set()

    def _on_reload_signal(self, _signum: int, _frame: Any) -> None:
        self.notifier.notify(
            RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        )
        try:
            self.controller.reload()
            logger.info("configuration reloaded from %s", self.controller.config_path)
        except ConfigError as err:
            logger.error("reload refused, keeping the running configuration: %s", err)
        self.notifier.notify(READY=1)

    # The analysis loop

    def _analysis_loop(self, watchdog: Watchdog | None) -> None:
        last_stamp: float | None = None  # the newest frame's timestamp (the machine's clock)
        last_frame_at = time.monotonic()  # when it arrived
        frames = 0
        window_start = time.monotonic()
        while not self.stop_event.is_set():
            if watchdog:
                watchdog.beat()
            period = 1.0 / self.controller.config.camera.fps
            frame = self.capture.latest(timeout=min(period, 0.5))
            arrived = time.monotonic()
            elapsed = arrived - window_start
            if elapsed >= 2.0:  # also when no frame comes: 0 fps is the truth then
                self.status.update(fps=round(frames / elapsed, 1))
                frames, window_start = 0, arrived
            if frame is None:
                silent_for = arrived - last_frame_at
                if silent_for >= max(NO_FRAMES_AFTER_S, 2 * period):
                    now = None if last_stamp is None else last_stamp + silent_for
                    self._no_frames(now, silent_for)
                continue
            if self.analyser is None or self.machine is None:
                continue
            if last_stamp is not None and frame.timestamp - last_stamp < period * 0.999:
                if not self.options.fast:  # wait for the next slot, then take the newest frame
                    self.stop_event.wait(period - (frame.timestamp - last_stamp))
                continue
            last_stamp, last_frame_at = frame.timestamp, arrived
            self._clip_time = frame.clip_time
            self._analyse(frame.rgb, frame.timestamp, frame.still)
            frames += 1

    def _no_frames(self, now: float | None, silent_for: float) -> None:
        """No frame for `silent_for` seconds (camera off, unplugged, missing, file ended):
        nobody is seen, on the clock (`now`; None before the first frame), so presence ends
        after the absence time as when a room empties, and the status says why."""
        camera = self.status.snapshot()
        why = camera["camera_detail"] or f"camera {camera['camera_state']}"
        self.status.update(presence_detail=f"no camera frames for {silent_for:.0f} s: {why}")
        if self.machine is None or now is None:
            return
        self._clip_time = None  # past the file's end, or a camera: the wall clock
        self.follow(now, None, 0)

    def _analyse(self, rgb: Any, now: float, still: bool) -> None:
        assert self.analyser is not None and self.machine is not None
        assert self.calibration is not None
        self.status.update(presence_detail="")
        follow = self.controller.config.mood.follow
        results = self.analyser.analyse(
            rgb,
            None if still else now,
            all_faces=follow == "room",
            also_denoised=self.calibration.wants_denoised,
        )
        preview = self.controller.config.web.preview
        self._last_view = (rgb, [r.face for r in results]) if preview else None
        calibrated = self.calibration.observe_frame(now, [r.prediction for r in results])
        combined = combine_faces(
            [(r.face.area, probs) for r, probs in zip(results, calibrated, strict=True)], follow
        )
        self.follow(now, combined, len(results))

    def follow(self, now: float, probabilities: Any, faces: int) -> None:
        """One analysed frame's outcome (the followed probabilities, or None for no face)
        into the mood machine, the status, and on to the player."""
        assert self.machine is not None
        events = self.machine.observe(now, probabilities)
        scores = {k: round(v, 3) for k, v in self.machine.scores().items()}
        top = max(scores, key=scores.__getitem__) if scores and faces else None
        self.status.update(
            faces=faces, scores=scores, emotion=top, confidence=scores[top] if top else 0.0
        )
        for event in events:
            self._on_event(event)

    def _on_event(self, event: MoodChanged | PresenceChanged) -> None:
        if isinstance(event, MoodChanged):
            logger.info(
                "mood changed: %s -> %s at %s (%s)",
                event.previous or "no mood yet",
                event.mood,
                describe_moment(self._clip_time),
                event.reason,
            )
            self.status.update(mood=event.mood, mood_reason=event.reason, mood_since=time.time())
        else:
            logger.info(
                "presence changed: %s at %s",
                "someone there" if event.present else "nobody there",
                describe_moment(self._clip_time),
            )
            self.status.update(present=event.present)
        self._reconsider()

    # From mood to music

    def desired_intent(self, handover: frozenset[tuple[str, str]] = frozenset()) -> Intent | None:
        """What should play now; None leaves playback alone. `handover`: music that other
        Mood Melodies of the home started, which this one may take over."""
        config = self.controller.config
        status = self.status.snapshot()
        if not config.player.autoplay:
            return None
        override = status["override"]
        if not override and not status["present"]:
            return Intent(play=False, mood=status["mood"], reason="nobody there")
        mood = override or status["mood"]
        if mood is None:
            return None
        reason = "mood override" if override else status["mood_reason"]
        return Intent(
            play=True,
            mood=mood,
            context_uri=config.playlists.for_mood(mood),
            reason=reason,
            handover=handover,
        )

    def _reconsider(self) -> None:
        """Hand the worker what should play now. Called from the analysis loop and from the
        page's and MQTT's threads (override, settings) and coordination's: one at a time, so
        the newest state is the one handed over last. While another Mood Melody drives the
        account, playback is left alone."""
        with self._intent_lock:
            decision = self.coordinator.decide()
            if not decision.drives:
                if self._last_intent is not None:
                    self._last_intent = None
                    self.worker.stand_by()
                    self.status.update(player_state="idle")
                return
            intent = self.desired_intent(decision.handover)
            if intent is not None and not intent.play and decision.someone_waits:
                return  # the room that takes the account over next changes the music, no gap
            if intent is None or intent == self._last_intent:
                return
            if self._last_intent is None and not intent.play:
                return  # nothing of ours plays yet: nothing to pause
            self._last_intent = intent
            self.worker.want(intent)

    def _apply_config(self, old: Config, new: Config) -> None:
        if dataclasses.replace(new.camera, enabled=True) != dataclasses.replace(
            old.camera, enabled=True
        ):
            self.capture.stop()  # another source or size: open it afresh
            self.capture = self._make_capture(new)
            self.capture.start()
        elif new.camera.enabled != old.camera.enabled:
            self.capture.set_enabled(new.camera.enabled)
        if new.mood != old.mood and self.machine is not None:
            self.machine.settings = MoodSettings.from_config(new.mood)
        if new.models != old.models:
            self.load_models()
        player_settings_changed = (dataclasses.replace(new.player, autoplay=True), new.spotify) != (
            dataclasses.replace(old.player, autoplay=True),
            old.spotify,
        )
        if player_settings_changed:  # backends read their settings when they are made
            self.worker.replace_player(make_player(new, self.status, self.state_dir))
            with self._intent_lock:
                self._last_intent = None
        if new.playlists != old.playlists or new.player != old.player:
            self._reconsider()


def setup_url(config: Config) -> str:
    port = config.web.listen.rpartition(":")[2]
    return f"http://{socket.gethostname()}.local:{port}"
