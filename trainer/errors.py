"""Errors raised by the trainer, one base class so callers can pick how broadly to catch.

    MargoError
     ├── DataError        bad dataset input; the message names the file (and row)
     ├── BundleError      a model bundle that is missing, corrupt or does not match
     ├── ConfigError      an option that makes no sense (unknown model, bad value)
     ├── ModelFitError    training diverged (NaN/inf loss)
     └── TrainingCancelled  a progress callback asked training to stop (job cancelled)

The CLI turns every MargoError into one readable line and exit code 2.
"""

from __future__ import annotations


class MargoError(Exception):
    """Base class of every error the trainer raises on purpose."""


class DataError(MargoError):
    """Invalid dataset input. The message names the file and, where it applies, the row."""


class BundleError(MargoError):
    """A model bundle that cannot be trusted: missing file, bad checksum, wrong shape."""


class ConfigError(MargoError):
    """An invalid option or combination of options."""


class ModelFitError(MargoError):
    """Training produced a non-finite loss or non-finite parameters."""


class TrainingCancelled(MargoError):
    """Raised from a progress callback to stop training at the end of an epoch."""
