"""The live side of personal calibration: recent features, the guided teach session, "wrong
mood" corrections, and refitting in the background.

The daemon feeds `CalibrationService.observe_frame` with every analysed frame and gets the
calibrated probabilities back; the page and MQTT reach the rest through the Controller.
Only features, probabilities and labels are kept, in memory and in the store: never a frame.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.calibration import (
    Calibration,
    CalibrationStore,
    Reference,
    Samples,
    Stored,
    StoreError,
    evaluate_cv,
    fit,
    log_probabilities,
    unread,
)
from device.classifier import Prediction
from device.config import Config
from device.controller import CalibrationUnavailable, Controller
from device.status import StatusBoard

logger = logging.getLogger(__name__)

PROMPTS: tuple[tuple[str, str], ...] = (
    ("neutral", "Look neutral"),
    ("happy", "Smile"),
    ("surprise", "Look surprised"),
    ("angry", "Frown"),
    ("sad", "Look sad"),
    ("fear", "Look scared"),
    ("disgust", "Look disgusted"),
)
READY_S = 1.5  # per prompt: time to make the face, not recorded
CAPTURE_S = 3.0  # per prompt: recorded while a face is found
LOG_SECONDS = 30.0
CORRECTION_WINDOW_S = 5.0
"""A correction labels the frames of the last few seconds."""
FACE_FOUND_FOR_S = 0.5


def model_id(model: Path, has_features: bool) -> str:
    """Which model (and which kind of features) stored samples belong to."""
    digest = hashlib.sha256(model.read_bytes()).hexdigest()[:16]
    return f"{digest}:{'features' if has_features else 'log-probabilities'}"


def feature_vector(prediction: Prediction) -> np.ndarray:
    """The calibration's input: the penultimate features, else the log-probabilities."""
    if prediction.features is not None:
        return prediction.features
    return log_probabilities(prediction.probabilities)


@dataclass(frozen=True)
class Observation:
    at: float  # the frame's time
    features: np.ndarray
    probabilities: np.ndarray  # the shipped model's
    denoised: tuple[np.ndarray, np.ndarray] | None = None  # the same, of the denoised face

    @classmethod
    def of(cls, at: float, prediction: Prediction) -> Observation:
        denoised = prediction.denoised
        return cls(
            at,
            feature_vector(prediction),
            prediction.probabilities,
            None if denoised is None else (feature_vector(denoised), denoised.probabilities),
        )


def samples_of(
    observations: Sequence[Observation], labels: np.ndarray, times: np.ndarray
) -> Samples:
    """Labelled samples of observations (at least one), with their denoised readings (NaN
    for observations without one; None when none has one)."""
    denoised = None
    if any(o.denoised is not None for o in observations):
        missing = unread(observations[0].features, observations[0].probabilities)
        readings = [missing if o.denoised is None else o.denoised for o in observations]
        denoised = (
            np.array([features for features, _ in readings]),
            np.array([probabilities for _, probabilities in readings]),
        )
    return Samples.of(
        np.array([o.features for o in observations]),
        np.array([o.probabilities for o in observations]),
        labels,
        times,
        denoised,
    )


def calibrated(calibration: Calibration, observation: Observation) -> np.ndarray:
    """A face's calibrated probabilities, from the reading the calibration applies to; the
    shipped model's for a face not read denoised under a calibration that reads faces
    denoised (a frame analysed just before it switched)."""
    if not calibration.denoise:
        return calibration.apply(observation.features, observation.probabilities)
    if observation.denoised is None:
        return observation.probabilities
    return calibration.apply(*observation.denoised)


class FeatureLog:
    """The followed face's observations of the last `seconds`, oldest first (thread-safe)."""

    def __init__(self, seconds: float = LOG_SECONDS) -> None:
        self.seconds = seconds
        self._entries: deque[Observation] = deque()
        self._lock = threading.Lock()

    def add(self, observation: Observation) -> None:
        with self._lock:
            self._entries.append(observation)
            while self._entries and self._entries[0].at < observation.at - self.seconds:
                self._entries.popleft()

    def since(self, start: float) -> list[Observation]:
        with self._lock:
            return [entry for entry in self._entries if entry.at >= start]


class TeachSession:
    """One guided sequence of prompts; pure: every call says what time it is (monotonic)."""

    def __init__(
        self,
        labels: Sequence[str],
        started_at: float,
        prompts: Sequence[tuple[str, str]] = PROMPTS,
        ready_s: float = READY_S,
        capture_s: float = CAPTURE_S,
    ) -> None:
        unknown = {emotion for emotion, _ in prompts} - set(labels)
        if unknown:
            raise ValueError(f"prompts for emotions the model lacks: {sorted(unknown)}")
        self.labels = tuple(labels)
        self.started_at = started_at
        self.prompts = tuple(prompts)
        self.ready_s = ready_s
        self.capture_s = capture_s
        self._taken: list[tuple[Observation, int]] = []
        self._face_at: float | None = None

    @property
    def duration_s(self) -> float:
        return len(self.prompts) * (self.ready_s + self.capture_s)

    def _step(self, now: float) -> tuple[int, bool, float] | None:
        """(prompt index, recording?, seconds left in this phase); None once finished."""
        elapsed = now - self.started_at
        if elapsed >= self.duration_s:
            return None
        index, into = divmod(max(elapsed, 0.0), self.ready_s + self.capture_s)
        if into < self.ready_s:
            return int(index), False, self.ready_s - into
        return int(index), True, self.ready_s + self.capture_s - into

    def done(self, now: float) -> bool:
        return self._step(now) is None

    def observe(self, now: float, observation: Observation | None) -> None:
        """A frame: the followed face's observation, or None when no face was found."""
        if observation is None:
            return
        self._face_at = now
        step = self._step(now)
        if step is not None and step[1]:
            emotion = self.prompts[step[0]][0]
            self._taken.append((observation, self.labels.index(emotion)))

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys((emotion for emotion, _ in self.prompts), 0)
        for _, label in self._taken:
            counts[self.labels[label]] += 1
        return counts

    def state(self, now: float) -> dict[str, Any]:
        """What the page shows: the prompt, its countdown, whether a face is found."""
        step = self._step(now)
        face_found = self._face_at is not None and now - self._face_at <= FACE_FOUND_FOR_S
        state: dict[str, Any] = {
            "active": step is not None,
            "face_found": face_found,
            "counts": self.counts(),
            "total_prompts": len(self.prompts),
        }
        if step is not None:
            index, recording, left = step
            emotion, instruction = self.prompts[index]
            state.update(
                index=index,
                emotion=emotion,
                instruction=instruction,
                recording=recording,
                seconds_left=round(left, 1),
            )
        return state

    def samples(self, taken_at: float) -> Samples:
        """What was recorded, stamped `taken_at` (seconds since the epoch) plus the order."""
        if not self._taken:
            return Samples.empty(0, len(self.labels))
        return samples_of(
            [observation for observation, _ in self._taken],
            np.array([label for _, label in self._taken]),
            taken_at + np.arange(len(self._taken)) * 1e-3,
        )


class CalibrationService:
    """The household calibration of one loaded model: applied to every frame, taught,
    corrected, refitted on a background thread and saved in the state directory.
    `reference` (the model's head and feature statistics) enables the household
    standardisation."""

    def __init__(
        self,
        state_dir: Path,
        labels: Sequence[str],
        model: str,
        status: StatusBoard,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        reference: Reference | None = None,
    ) -> None:
        self.labels = tuple(labels)
        self.model = model
        self.reference = reference
        self.store = CalibrationStore(state_dir)
        self.log = FeatureLog()
        self._status = status
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._calibration: Calibration | None = None
        self._samples: Samples | None = None  # the household's, in the store
        self._session: TeachSession | None = None
        self._last_frame_at = 0.0
        self._pending: Samples | None = None  # waiting to be fitted and saved
        self._in_flight: Samples | None = None  # being fitted now
        self._fitter: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._load()

    def _load(self) -> None:
        try:
            stored = self.store.load()
        except StoreError as err:
            logger.error("calibration: %s; using the shipped model", err)
            self._status.update(calibration=f"shipped model (stored calibration unreadable: {err})")
            return
        if stored is not None and (stored.model_id, stored.labels) != (self.model, self.labels):
            logger.warning(
                "calibration: %s was made for another emotion model; using the "
                "shipped model until you teach it again",
                self.store.path,
            )
            self._status.update(
                calibration="shipped model (the calibration was made for another "
                "model: teach it again)"
            )
            return
        if stored is not None and stored.calibration is None:
            logger.info("calibration: %s is of an older version; refitting it", self.store.path)
            self._add(stored.samples)
        elif stored is not None:
            self._samples, self._calibration = stored.samples, stored.calibration
        self._describe(stored.saved_at if stored else None)

    def _describe(self, saved_at: float | None) -> None:
        samples = self._samples
        if self._calibration is None or samples is None or not len(samples):
            self._status.update(calibration="shipped model")
            return
        taught = sum(1 for count in samples.counts(len(self.labels)) if count)
        date = time.strftime("%Y-%m-%d %H:%M", time.localtime(saved_at or self._wall_clock()))
        grain = ", faces denoised (a grainy camera)" if self._calibration.denoise else ""
        self._status.update(
            calibration=f"calibrated: {len(samples)} samples of {taught} emotions, {date}{grain}"
        )

    def register(self, controller: Controller) -> None:
        """Wire the Controller's calibration commands to this service."""
        for name in (
            "correct",
            "teach_start",
            "teach_state",
            "teach_finish",
            "teach_save",
            "teach_discard",
            "reset",
        ):
            controller.on_action(f"calibration.{name}", getattr(self, name))

    # -- the analysis loop -------------------------------------------------------------

    def observe_frame(self, now: float, predictions: Sequence[Prediction]) -> list[np.ndarray]:
        """One analysed frame (faces largest first): log the largest face, feed a running
        teach session, and return every face's calibrated probabilities."""
        observations = [Observation.of(now, p) for p in predictions]
        followed = observations[0] if observations else None
        if followed is not None:
            self.log.add(followed)
        with self._lock:
            self._last_frame_at = now
            calibration = self._calibration
            if self._session is not None:
                self._session.observe(self._clock(), followed)
        if calibration is None:
            return [o.probabilities for o in observations]
        return [calibrated(calibration, o) for o in observations]

    @property
    def wants_denoised(self) -> bool:
        """Whether faces should also be read denoised: while a teach session runs (its samples
        decide whether this household reads better so) and while the calibration reads faces
        denoised. Otherwise the second reading would only cost time."""
        with self._lock:
            calibration = self._calibration
            return self._session is not None or (calibration is not None and calibration.denoise)

    # -- corrections -------------------------------------------------------------------

    def correct(self, wrong: str, right: str) -> int:
        """ "That was not `wrong`, it was `right`": the last seconds' frames that read as
        `wrong` (all of them if none did) get the label `right`; refits in the background.
        Returns how many frames were labelled; ValueError when no face was seen lately."""
        for emotion in (wrong, right):
            if emotion not in self.labels:
                raise ValueError(f"unknown emotion {emotion!r}")
        with self._lock:
            recent = self.log.since(self._last_frame_at - CORRECTION_WINDOW_S)
            calibration = self._calibration
        if not recent:
            raise ValueError(f"no face in the last {CORRECTION_WINDOW_S:.0f} s: nothing to correct")
        seen = np.array(
            [o.probabilities if calibration is None else calibrated(calibration, o) for o in recent]
        )
        chosen = seen.argmax(axis=1) == self.labels.index(wrong)
        if not chosen.any():
            chosen[:] = True
        picked = [o for o, keep in zip(recent, chosen, strict=True) if keep]
        samples = samples_of(
            picked,
            np.full(len(picked), self.labels.index(right)),
            self._wall_clock() + np.arange(len(picked)) * 1e-3,
        )
        logger.info("calibration: %d frames read as %s relabelled %s", len(samples), wrong, right)
        self._add(samples)
        return len(samples)

    # -- the guided teach session ------------------------------------------------------

    def teach_start(self) -> dict[str, Any]:
        with self._lock:
            self._session = TeachSession(self.labels, self._clock())
            logger.info("calibration: teach session started")
            return self._session.state(self._clock())

    def teach_state(self) -> dict[str, Any]:
        with self._lock:
            if self._session is None:
                return {"active": False, "started": False}
            return {**self._session.state(self._clock()), "started": True}

    def _finished_session(self) -> TeachSession:
        session = self._session
        if session is None:
            raise CalibrationUnavailable("no teach session: start one first")
        if not session.done(self._clock()):
            raise CalibrationUnavailable("the teach session is still running")
        return session

    def teach_finish(self) -> dict[str, Any]:
        """Before/after figures of the session's samples, by blocked cross-validation."""
        with self._lock:
            samples = self._finished_session().samples(self._wall_clock())
        if not len(samples):
            return {"samples": 0, "counts": dict.fromkeys(self.labels, 0)}
        started = time.perf_counter()
        result = evaluate_cv(samples, len(self.labels), reference=self.reference).as_dict()
        result["counts"] = dict(zip(self.labels, result["counts"], strict=True))
        logger.info(
            "calibration: teach session of %d samples, cross-validated accuracy "
            "%.0f%% -> %.0f%% (%.2f s)",
            len(samples),
            100 * result["accuracy_before"],
            100 * result["accuracy_after"],
            time.perf_counter() - started,
        )
        return result

    def teach_save(self) -> int:
        """Add the session's samples to the household's and refit; how many were added."""
        with self._lock:
            samples = self._finished_session().samples(self._wall_clock())
            self._session = None
        if len(samples):
            self._add(samples)
        return len(samples)

    def teach_discard(self) -> None:
        with self._lock:
            self._session = None
        logger.info("calibration: teach session discarded")

    def reset(self) -> None:
        """Back to the shipped model: the stored samples and parameters are deleted."""
        self.wait_idle(10.0)
        with self._lock:
            self._calibration = self._samples = self._pending = self._in_flight = None
            self.store.clear()
        logger.info("calibration: reset to the shipped model")
        self._describe(None)

    # -- fitting in the background -----------------------------------------------------

    def _add(self, samples: Samples) -> None:
        with self._lock:
            base = self._pending or self._in_flight or self._samples  # the newest of them
            if base is None or not len(base):
                base = Samples.empty(samples.features.shape[1], len(self.labels))
            self._pending = base.plus(samples).capped()
            if self._fitter is None:
                self._idle.clear()
                self._fitter = threading.Thread(
                    target=self._fit_pending, name="calibration", daemon=True
                )
                self._fitter.start()

    def _fit_pending(self) -> None:
        while True:
            with self._lock:
                samples, self._pending = self._pending, None
                self._in_flight = samples
                if samples is None:
                    self._fitter = None
                    self._idle.set()
                    return
            try:
                started = time.perf_counter()
                calibration = fit(samples, len(self.labels), reference=self.reference)
                saved_at = self._wall_clock()
                self.store.save(Stored(samples, calibration, self.labels, self.model, saved_at))
                with self._lock:
                    self._samples, self._calibration = samples, calibration
                logger.info(
                    "calibration: refitted on %d samples in %.2f s and saved",
                    len(samples),
                    time.perf_counter() - started,
                )
                self._describe(saved_at)
            except Exception:
                logger.exception("calibration: refitting failed; keeping the previous one")
            finally:
                with self._lock:
                    self._in_flight = None

    def wait_idle(self, timeout: float) -> bool:
        """True once no refit is pending or running (tests, reset)."""
        return self._idle.wait(timeout)


def check(config: Config) -> list[tuple[str, bool, str]]:
    """`moodmelody check`: is there a household calibration, and is it for this model?"""
    store = CalibrationStore(config.state_dir())
    try:
        stored = store.load()
    except StoreError as err:
        return [("calibration", False, f"{err} (Reset on the Teach page removes it)")]
    if stored is None:
        return [("calibration", True, "none: the shipped model as is")]
    model = config.model_path("emotion")
    current = model_id(model, stored.model_id.endswith(":features")) if model.exists() else ""
    if stored.model_id != current:
        return [("calibration", False, "made for another emotion model: teach it again")]
    when = time.strftime("%Y-%m-%d", time.localtime(stored.saved_at))
    return [("calibration", True, f"{len(stored.samples)} samples of the household, {when}")]
