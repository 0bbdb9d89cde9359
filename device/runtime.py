"""The TFLite interpreter, from whichever runtime is installed.

LiteRT (`ai-edge-litert`, the maintained successor of tflite-runtime) first; then
`tflite_runtime` (its last release, 2.14, only loads with numpy < 2, as on Raspberry
Pi OS Bookworm); then `tensorflow.lite` on a desktop that has TensorFlow anyway.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RUNTIMES = (
    ("ai-edge-litert", "ai_edge_litert.interpreter"),
    ("tflite-runtime", "tflite_runtime.interpreter"),
    ("tensorflow", "tensorflow.lite"),
)


class RuntimeUnavailable(RuntimeError):
    pass


def _interpreter_class() -> tuple[str, Any]:
    problems = []
    for name, module_name in RUNTIMES:
        try:
            module = importlib.import_module(module_name)
        except Exception as err:  # ImportError, or a numpy ABI error from an old wheel
            problems.append(f"{name}: {err.__class__.__name__}: {err}")
            continue
        return name, module.Interpreter
    raise RuntimeUnavailable("no TFLite runtime could be loaded: " + "; ".join(problems))


def runtime_name() -> str:
    return _interpreter_class()[0]


def load_interpreter(model: Path, threads: int = 1) -> Any:
    """An allocated interpreter for `model`, running on `threads` CPU threads."""
    if not model.is_file():
        raise FileNotFoundError(f"model file not found: {model}")
    name, interpreter_class = _interpreter_class()
    interpreter = interpreter_class(model_path=str(model), num_threads=threads)
    interpreter.allocate_tensors()
    logger.debug("loaded %s with %s (%d thread(s))", model.name, name, threads)
    return interpreter
