"""The package's version: its own module, so the server names it without the SDK."""

__version__ = "0.1.0"
