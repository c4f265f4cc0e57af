"""Exceptions with messages meant for the user: what went wrong and what to do."""


class ProximaError(Exception):
    """Base class of every error Proxima reports to a user."""


class ConfigurationError(ProximaError):
    """The stack configuration or settings are invalid."""


class StackError(ProximaError):
    """A local service could not be started, checked or stopped."""
