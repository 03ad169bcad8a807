"""Importing this module registers every model."""

from . import discriminators, mapping, scratch, vae  # noqa: F401
