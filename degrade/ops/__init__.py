"""The built-in operators; importing this package registers them all."""

from . import blur, compression, creases, dust, halftone, imgaug_op, noise, scratches, stains, tears, tone  # noqa: F401
