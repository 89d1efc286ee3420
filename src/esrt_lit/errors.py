"""The project's exceptions, at the bottom layer: every layer raises them, the commands' runner
(:func:`esrt_lit.cli.run_task`) turns them into one ``error:`` line. Their messages name the
key, value or file at fault and what was expected."""

from __future__ import annotations

__all__ = ["CheckpointError", "ConfigError", "Interrupted", "NonFiniteLossError"]


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and the value."""


class CheckpointError(ValueError):
    """A checkpoint file cannot be read, or holds no network this project can build; names the file."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class Interrupted(Exception):
    """The run was stopped by a signal; the message says where and how to resume.

    Args:
        message: the one line, naming the signal.
        signum: the signal's number; the command exits with ``128 + signum``.
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_status = 128 + signum
