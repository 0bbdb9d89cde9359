"""One frame through the networks: faces, then the emotion of each face."""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from device.classifier import EmotionClassifier, Prediction
from device.config import Config
from device.denoise import denoised
from device.detector import Face, FaceDetector, crop_face
from device.tracker import FaceTracker


@dataclass(frozen=True)
class FaceResult:
    face: Face
    prediction: Prediction


class Analyser:
    def __init__(self, tracker: FaceTracker, classifier: EmotionClassifier, margin: float) -> None:
        self.tracker = tracker
        self.classifier = classifier
        self.margin = margin

    @classmethod
    def from_config(cls, config: Config) -> Analyser:
        models = config.models
        # OpenCV would spread each resize over every core: costlier in CPU than in one thread
        # for frames this small, and the Pi has other work to do.
        cv2.setNumThreads(models.threads)
        near, far = (
            FaceDetector(config.model_path(key), models.threads, models.min_face_score)
            for key in ("face_detector", "face_scanner")
        )
        classifier = EmotionClassifier(config.model_path("emotion"), models.threads)
        return cls(FaceTracker(near, far), classifier, models.face_margin)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.classifier.labels

    def analyse(
        self,
        rgb: np.ndarray,
        now: float | None = None,
        all_faces: bool = True,
        also_denoised: bool = False,
    ) -> list[FaceResult]:
        """Faces in the frame, largest first, each with its emotion (only the largest unless
        `all_faces`). With `now` (seconds) the frame is one of a stream and faces are
        followed from frame to frame; without it, a still image scanned whole. With
        `also_denoised`, each face is also read denoised (for the household calibration:
        `device.teach.CalibrationService.wants_denoised`)."""
        faces = self.tracker.scan(rgb) if now is None else self.tracker.track(rgb, now)
        if not all_faces:
            faces = faces[:1]
        size = self.classifier.input_size
        read = self.read_both_ways if also_denoised else self.classifier.predict
        return [FaceResult(face, read(crop_face(rgb, face, size, self.margin))) for face in faces]

    def read_both_ways(self, crop: np.ndarray) -> Prediction:
        """The emotion of a crop as it is, with its reading after noise reduction (which the
        household calibration may prefer: `device.calibration.fit`)."""
        prediction = self.classifier.predict(crop)
        return replace(prediction, denoised=self.classifier.predict(denoised(crop)))
