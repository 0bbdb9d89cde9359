"""Mood Melody: the daemon that runs on the Raspberry Pi."""

__version__ = "0.1.0"

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""The emotions the model knows, in FER2013's label order."""
