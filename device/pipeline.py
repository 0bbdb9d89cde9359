"""One frame through the networks: faces, then the emotion of each face."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from device.classifier import EmotionClassifier, Prediction
from device.config import Config
from device.detector import Face, FaceDetector, crop_face


@dataclass(frozen=True)
class FaceResult:
    face: Face
    prediction: Prediction


class Analyser:
    def __init__(
        self, detector: FaceDetector, classifier: EmotionClassifier, margin: float
    ) -> None:
        self.detector = detector
        self.classifier = classifier
        self.margin = margin

    @classmethod
    def from_config(cls, config: Config) -> Analyser:
        models = config.models
        # OpenCV would spread each resize over every core: costlier in CPU than in one thread
        # for frames this small, and the Pi has other work to do.
        cv2.setNumThreads(models.threads)
        detector = FaceDetector(
            config.model_path("face_detector"), models.threads, models.min_face_score
        )
        classifier = EmotionClassifier(config.model_path("emotion"), models.threads)
        return cls(detector, classifier, models.face_margin)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.classifier.labels

    def analyse(self, rgb: np.ndarray, all_faces: bool = True) -> list[FaceResult]:
        """Faces in the frame, largest first, each with its emotion (only the largest unless
        `all_faces`)."""
        faces = self.detector.detect(rgb)
        if not faces:
            return []
        if not all_faces:
            faces = faces[:1]
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        size = self.classifier.input_size
        return [
            FaceResult(face, self.classifier.predict(crop_face(gray, face, size, self.margin)))
            for face in faces
        ]
