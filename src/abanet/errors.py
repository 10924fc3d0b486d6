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


class ImageTooLargeError(ImageReadError):
    """An image has more pixels than allowed (read from its header, before decoding)."""
