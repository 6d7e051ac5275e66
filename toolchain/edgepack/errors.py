"""The exceptions edgepack raises, and the exit statuses the CLI maps them to.

The library never exits the process: it raises one of these with a message that says what is
wrong and what to do. Failures inside third-party tools are wrapped (``raise ... from e``).
"""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    OK = 0
    ERROR = 1  # an unexpected failure (a bug): the CLI shows the traceback
    USAGE = 2  # bad arguments, profile or input files
    STAGE_FAILED = 3  # a pipeline stage (pruning, conversion, ...) failed
    BUDGET = 4  # the build ran but the result breaks the target's budgets
    DEVICE = 5  # the device could not be reached, refused us, or failed mid-run
    REGRESSION = 6  # `edgepack check`: the new bundle is worse than the baseline beyond a threshold
    INVALID_BUNDLE = 7  # a bundle is damaged, incomplete or altered (`edgepack verify`, `edgepack check`)
    STORAGE = 8  # `edgepack tune`: the study database could not be reached or used
    INTERRUPTED = 130


def one_line(text: str) -> str:
    """``text`` on one line: its non-blank lines joined with "; " (a third-party message often spans several)."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


class EdgepackError(Exception):
    """Base class. ``str(e)`` is one line meant for the user: a message that spans several lines
    (a third-party tool's, passed on) is joined onto one."""

    exit_status = ExitStatus.ERROR

    def __init__(self, *args):
        if len(args) == 1 and isinstance(args[0], str) and ("\n" in args[0] or "\r" in args[0]):
            args = (one_line(args[0]),)
        super().__init__(*args)


class UsageError(EdgepackError):
    """Bad command-line arguments or bad input files given by the user."""

    exit_status = ExitStatus.USAGE


class ProfileError(UsageError):
    """A target profile is unknown, unreadable or invalid."""


class ModelLoadError(UsageError):
    """A user's model, factory or checkpoint cannot be loaded."""


class DataError(UsageError):
    """A data set (training, calibration or evaluation) is missing or malformed."""


class StageError(EdgepackError):
    """A pipeline stage failed; the message names the stage and the next step."""

    exit_status = ExitStatus.STAGE_FAILED


class DependencyError(StageError):
    """A package the stage needs is missing or broken."""


class ConversionError(StageError):
    """Export to ONNX, conversion to TFLite or quantization failed."""


class StageCeilingError(StageError):
    """A stage ran past the time ceiling its profile and the model's size give it."""


class ValidationError(StageError):
    """A converted model disagrees with its source beyond tolerance."""


class BudgetError(EdgepackError):
    """The built model breaks one of the target's budgets."""

    exit_status = ExitStatus.BUDGET


class BundleError(EdgepackError):
    """A bundle is damaged, incomplete or altered; the message names the file."""

    exit_status = ExitStatus.INVALID_BUNDLE


class RegressionError(EdgepackError):
    """A new bundle is worse than its baseline beyond the gate's thresholds."""

    exit_status = ExitStatus.REGRESSION


class DeviceError(EdgepackError):
    """A device could not be reached or used. ``retryable`` says whether trying again may help."""

    exit_status = ExitStatus.DEVICE
    retryable = False


class DeviceUnreachable(DeviceError):
    """No connection to the device (refused, no route, name unknown, no such adb serial)."""

    retryable = True


class DeviceAuthError(DeviceError):
    """The device refused our credentials (key not authorised, adb not authorised)."""


class HostKeyError(DeviceError):
    """The SSH host key is unknown or does not match known_hosts: possibly not the device we think."""


class DeviceTimeout(DeviceError):
    """A command on the device took longer than allowed."""

    retryable = True


class DeviceDisconnected(DeviceError):
    """The connection dropped while a command was running; nothing it produced is used."""

    retryable = True


class RuntimeMissing(DeviceError):
    """The device lacks the runtime (Python, numpy, LiteRT, ExecuTorch or benchmark_model) the run needs."""


class StudyError(UsageError):
    """`edgepack tune`: an unknown study, or one started with other settings."""


class StorageError(EdgepackError):
    """`edgepack tune`: the study database cannot be reached or used."""

    exit_status = ExitStatus.STORAGE
