"""Errors of the MongoDB registry, in the kit's one error tree (``usvc_core.errors``)."""

from __future__ import annotations

from usvc_core.errors import UsvcError

__all__ = ["RegistryError", "RegistryUnavailableError"]


class RegistryError(UsvcError):
    """A registry operation failed; the message never contains the MongoDB credentials."""


class RegistryUnavailableError(RegistryError):
    """MongoDB cannot be reached right now (connection refused, timeout, no primary)."""
