"""Re-extract the BlazeFace models from the mediapipe wheel and check their sha256.

The models are committed under models/; this script shows where they come from and lets
anyone verify them. It downloads the wheel from PyPI (run by hand: `make face-model`);
the device itself never depends on mediapipe.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "mediapipe==0.10.14"
MODELS = {  # file in models/ -> sha256; each is mediapipe/modules/face_detection/<file>
    "face_detection_short_range.tflite": (
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"
    ),
    "face_detection_full_range_sparse.tflite": (
        "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1"
    ),
}
FOLDER = Path(__file__).resolve().parent


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.11",
                "--platform",
                "manylinux2014_x86_64",
                "--dest",
                tmp,
                WHEEL,
            ],
            check=True,
        )
        wheel = zipfile.ZipFile(next(Path(tmp).glob("mediapipe-*.whl")))
        extracted = {
            name: wheel.read(f"mediapipe/modules/face_detection/{name}") for name in MODELS
        }
    failed = 0
    for name, data in extracted.items():
        digest = hashlib.sha256(data).hexdigest()
        if digest != MODELS[name]:
            print(
                f"{name}: sha256 mismatch: got {digest}, expected {MODELS[name]}", file=sys.stderr
            )
            failed += 1
            continue
        (FOLDER / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes, sha256 {digest} (ok)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
