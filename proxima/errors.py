"""Exceptions with messages meant for the user: what went wrong and what to do."""

from pydantic import ValidationError


class ProximaError(Exception):
    """Base class of every error Proxima reports to a user."""


class ConfigurationError(ProximaError):
    """The stack configuration or settings are invalid."""


class StackError(ProximaError):
    """A local service could not be started, checked or stopped."""


def describe_invalid(exc: ValidationError) -> str:
    """A pydantic validation error as one line: ``field.path: reason; …``."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'value'}: "
        f"{error['msg'].removeprefix('Value error, ')}"
        for error in exc.errors()
    )
