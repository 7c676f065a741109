"""The version graphport writes into every `model.json`: one place, read by the package root and the metadata
writers without importing the package root (which would run the lazy public API from below)."""

__version__ = "0.1.0"
