"""The package version; the service reports it in its ready reply and ensure-up check."""

__version__ = "0.1.0"
