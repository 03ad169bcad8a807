"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class DaguerreError(Exception):
    """A user-facing error: bad input, bad recipe, missing data. Its message is one line."""


class RecipeError(DaguerreError, ValueError):
    """A recipe or parameter that does not validate; the message names the offending path."""


class ImageError(DaguerreError, ValueError):
    """An image that cannot be read, decoded or used."""
