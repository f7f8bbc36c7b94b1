"""Typed errors whose message is one sentence a user can act on.

Front ends show `str(error)` as is (CLI on stderr, Gradio as gr.Error, widgets as a label);
anything that is not a `MomentLensError` is a bug and is shown with its traceback only in debug mode.
"""


class MomentLensError(Exception):
    """Base class: the message says what is wrong and what to do."""


# --- video input -------------------------------------------------------------------------
class VideoError(MomentLensError):
    """A video file cannot be used."""


class VideoNotFoundError(VideoError):
    pass


class NotAVideoError(VideoError):
    pass


class CorruptVideoError(VideoError):
    pass


class EmptyVideoError(VideoError):
    pass


class NoVideoStreamError(VideoError):
    pass


class VideoTooLongError(VideoError):
    pass


# --- models --------------------------------------------------------------------------------
class EncoderError(MomentLensError):
    pass


class UnknownEncoderError(EncoderError):
    pass


class WeightsNotFoundError(EncoderError):
    pass


class CheckpointError(MomentLensError):
    """A checkpoint is missing, unreadable, or made for another model/encoder."""


# --- user text and annotation files ----------------------------------------------------------
class QueryError(MomentLensError):
    """An empty, whitespace-only or over-long text query."""


class AnnotationError(MomentLensError):
    """An annotation or prediction file that does not parse (the message names file and line)."""


class WindowError(MomentLensError):
    """A [start, end] window that is empty or outside the video."""


class MissingDependencyError(MomentLensError):
    """An optional package that this feature needs is not installed (the message says what to install)."""


class CancelledError(MomentLensError):
    """The user stopped a long computation; nothing partial was kept."""
