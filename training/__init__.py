"""Desktop training pipeline: FER2013 to the int8 TFLite emotion model the device runs."""

from device import EMOTIONS

__all__ = ["EMOTIONS"]
