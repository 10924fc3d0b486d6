"""Exceptions raised for bad input: one-line messages naming the file (or thing) and the problem."""

from __future__ import annotations


class AbanetError(Exception):
    """Base class for every error abanet raises on purpose (the CLI prints it as one line)."""


class DataError(AbanetError):
    """A dataset file is missing, unreadable, unpaired or has the wrong content."""


class ModelError(AbanetError):
    """Unknown model name, bad option, unloadable weights or an input size the model cannot take."""


class ImageReadError(DataError):
    """An image file could not be decoded."""


class UsageError(AbanetError):
    """A command-line option or argument has a value the command cannot use."""


class OutputExistsError(DataError):
    """An output file is already there and replacing it was not asked for."""


class ConfigError(AbanetError):
    """A configuration key is unknown or its value is not allowed."""


class BackendError(AbanetError):
    """A backend cannot run here (no CUDA, missing runtime, unknown name)."""


class ExportError(AbanetError):
    """The export could not be written or does not reproduce the PyTorch model."""


class DetectorUnavailableError(ModelError):
    """A face detector's package or weight file is not installed."""


class LandmarkError(AbanetError):
    """Landmarks could not be found or make no sense for this face."""


class PlacementError(AbanetError):
    """A template could not be placed on a face (bad landmarks, degenerate warp, mask off the crop).

    ``reason`` is a short category for counting (the message has the details)."""

    def __init__(self, message: str, reason: str = "placement failed") -> None:
        super().__init__(message)
        self.reason = reason


class ImageTooLargeError(ImageReadError):
    """An image has more pixels than allowed (read from its header, before decoding)."""


class DistributedError(AbanetError):
    """The distributed engine (Ray) cannot run: not installed, cluster unreachable, workers dead."""
