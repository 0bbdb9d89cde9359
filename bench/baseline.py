"""The hobby apps' way, timed on the same frames: Haar cascade + a float Keras CNN.

Runs in its own virtual environment (.venv-baseline: TensorFlow and OpenCV 4.x, whose
wheel still ships Haar cascades; OpenCV 5's does not). Prints one JSON object.
The network is the ancestors' architecture (Conv2D 32→64→128→128 with dropout, a
1024-unit dense layer, softmax 7, 48×48 input) with untrained weights: only its cost
matters here. It is called with `model.predict` per frame, as those apps do.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2
import numpy as np
import tensorflow as tf


def hobby_model() -> tf.keras.Model:
    layers = tf.keras.layers
    return tf.keras.Sequential(
        [
            layers.Input((48, 48, 1)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Conv2D(128, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(128, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(1024, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(7, activation="softmax"),
        ]
    )


def main() -> None:
    frames = np.load(sys.argv[1])["frames"]
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    model = hobby_model()
    model.predict(np.zeros((1, 48, 48, 1), np.float32), verbose=0)  # build and warm up
    detect_ms, emotion_ms, cpu_ms, found = [], [], [], 0
    for rgb in frames:
        cpu0, t0 = time.process_time(), time.perf_counter()
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        faces = cascade.detectMultiScale(gray, scaleFactor=1.3, minNeighbors=5)
        t1 = time.perf_counter()
        for x, y, w, h in faces:
            crop = cv2.resize(gray[y : y + h, x : x + w], (48, 48))[None, :, :, None] / 255.0
            model.predict(crop.astype(np.float32), verbose=0)
        t2 = time.perf_counter()
        cpu_ms.append((time.process_time() - cpu0) * 1000)
        detect_ms.append((t1 - t0) * 1000)
        emotion_ms.append((t2 - t1) * 1000)
        found += len(faces) > 0
    print(
        json.dumps(
            {
                "detect_ms": detect_ms,
                "emotion_ms": emotion_ms,
                "cpu_ms": cpu_ms,
                "faces_found": found,
                "frames": len(frames),
                "parameters": model.count_params(),
                "versions": {"opencv": cv2.__version__, "tensorflow": tf.__version__},
            }
        )
    )


if __name__ == "__main__":
    main()
