"""degrade: parametric old-photo degradations composed into reproducible, hashable recipes.

>>> from degrade import load_recipe, replay
>>> r = load_recipe("old-photo")
>>> out = r.apply(image, seed=0, index=7)      # out.image, out.mask, out.params
>>> replay(image, out.params)                   # the same bytes again
"""

from .errors import DaguerreError, ImageError, RecipeError
from .operator import OPERATORS, STRUCTURED, UNSTRUCTURED, Operator, get_operator, list_operators, register
from . import ops  # noqa: F401  (registers the built-ins: a custom op taking one of their names fails at its own @register)
from .recipe import Degraded, Recipe, builtin_recipes, load_recipe, replay
from .rand import sample_rng

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
