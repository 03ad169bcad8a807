"""degrade: parametric old-photo degradations composed into reproducible, hashable recipes.

>>> from degrade import load_recipe, replay
>>> r = load_recipe("old-photo")
>>> out = r.apply(image, seed=0, index=7)      # out.image, out.mask, out.params
>>> replay(image, out.params)                   # the same bytes again
"""

from .errors import DaguerreError, ImageError, RecipeError
from .lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("OPERATORS", "Operator", "STRUCTURED", "UNSTRUCTURED", "get_operator", "list_operators", "register"), ".operator"),
    **dict.fromkeys(("Degraded", "Recipe", "builtin_recipes", "load_recipe", "replay"), ".recipe"),
    "sample_rng": ".rand",
}

__all__ = [
    "DaguerreError",
    "Degraded",
    "ImageError",
    "OPERATORS",
    "Operator",
    "Recipe",
    "RecipeError",
    "STRUCTURED",
    "UNSTRUCTURED",
    "builtin_recipes",
    "get_operator",
    "list_operators",
    "load_recipe",
    "register",
    "replay",
    "sample_rng",
]


# Imported on first use (numpy, OpenCV, the operators): the errors above are what pipelines' catalog and the cheap
# commands need. ".ops" first registers the built-ins: a custom op taking one of their names fails at its own @register.
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, first=".ops")
