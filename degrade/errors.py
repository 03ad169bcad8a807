"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class DaguerreError(Exception):
    """A user-facing error: bad input, bad recipe, missing data. Its message is one line."""


class RecipeError(DaguerreError, ValueError):
    """A recipe or parameter that does not validate; the message names the offending path."""


class ImageError(DaguerreError, ValueError):
    """An image that cannot be read, decoded or used."""


def some(names: list[str], limit: int) -> str:
    """The first ``limit`` of ``names`` for a one-line message, and how many more there are."""
    return ", ".join(names[:limit]) + (f", … {len(names) - limit} more" if len(names) > limit else "")


def first_line(doc: str | None) -> str:
    """The summary line of a docstring, "" for none (a registered class or builder need not have one)."""
    return next(iter((doc or "").strip().splitlines()), "")
