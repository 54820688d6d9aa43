"""Penwright: an offline desktop writing assistant on a local transformer model."""

__version__ = "0.1.0"
