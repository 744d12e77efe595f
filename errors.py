"""The errors hwnas raises for things a user can fix.

Every error a user can cause derives from `HwnasError` *and* from the builtin a caller would
naturally catch (ValueError, FileNotFoundError...), so `except ValueError` keeps working.
The CLI turns these into a one-line message and exit code 2, with no traceback.
"""

from __future__ import annotations

__all__ = [
    "HwnasError",
    "ArchError",
    "SpaceError",
    "ConfigError",
    "DataError",
    "CheckpointError",
    "ProfileError",
    "StaleProfileError",
    "BudgetError",
    "ObjectiveError",
    "HostChangedWarning",
]


class HwnasError(Exception):
    """Base class of every error hwnas raises on purpose."""


class ArchError(HwnasError, ValueError):
    """An architecture string, dict or object is not valid for its space."""


class SpaceError(HwnasError, ValueError):
    """A search-space description (YAML, preset name, dict) is not valid."""


class ConfigError(HwnasError, ValueError):
    """A run or experiment configuration is not valid."""


class DataError(HwnasError, FileNotFoundError):
    """A dataset could not be found or read."""


class CheckpointError(HwnasError, ValueError):
    """A checkpoint directory is missing, truncated, corrupted or unsafe."""


class ProfileError(HwnasError, ValueError):
    """A profile / lookup table / predictor file is missing or corrupted."""


class StaleProfileError(ProfileError):
    """A profile was measured on a different device fingerprint than the one asked for."""


class BudgetError(HwnasError, ValueError):
    """A budget expression is malformed, or no architecture can meet it."""


class ObjectiveError(HwnasError, ValueError):
    """An objective name is unknown, or an objective returned an invalid value."""


class HostChangedWarning(UserWarning):
    """A profile or latency predictor is used on a CPU whose family / model / stepping differ from
    the one it was measured on, while its fingerprint (model name, cores, libraries) still matches:
    e.g. two cloud hosts that both report "AMD EPYC". Its timings may not transfer."""

