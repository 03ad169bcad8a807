"""imgaug 0.4.0 on numpy 2: restore the aliases numpy removed, then import imgaug.

Import imgaug only through ``import_imgaug()`` so the aliases exist before its modules load.
"""

from __future__ import annotations

import warnings
from types import ModuleType

import numpy as np

_ALIASES = {"bool": bool, "int": int, "float": float, "complex": complex, "object": object, "str": str, "float_": np.float64}
_SCTYPES = {
    "int": [np.int8, np.int16, np.int32, np.int64],
    "uint": [np.uint8, np.uint16, np.uint32, np.uint64],
    "float": [np.float16, np.float32, np.float64, np.longdouble],
    "complex": [np.complex64, np.complex128, np.clongdouble],
    "others": [bool, object, bytes, str, np.void],
}


def patch_numpy() -> None:
    """Add ``np.sctypes``, ``np.bool``, ``np.complex``… back (idempotent, only where missing)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, value in _ALIASES.items():
            try:
                getattr(np, name)
            except AttributeError:
                setattr(np, name, value)
        try:
            np.sctypes  # noqa: B018
        except AttributeError:
            np.sctypes = _SCTYPES


def _patch_imgaug(iaa: ModuleType) -> None:
    """Two call sites that numpy 2 / OpenCV 5 broke (idempotent)."""
    geo = iaa.geometric.ElasticTransformation
    if not getattr(geo, "_daguerre_patched", False):
        original = geo._map_coordinates.__func__

        def _map_coordinates(cls, image, dx, dy, *args, **kwargs):
            # NEP 50 keeps the shift maps float64; OpenCV 5's convertMaps wants float32.
            return original(cls, image, np.asarray(dx, np.float32), np.asarray(dy, np.float32), *args, **kwargs)

        geo._map_coordinates = classmethod(_map_coordinates)
        geo._daguerre_patched = True
    pil = iaa.pillike
    if not getattr(pil._autocontrast_pil, "_daguerre_patched", False):
        original_ac = pil._autocontrast_pil

        def _autocontrast_pil(image, cutoff, ignore):
            # numpy 2 no longer converts a 1-element array to a Python scalar implicitly.
            if isinstance(cutoff, np.ndarray):
                cutoff = float(cutoff.ravel()[0])
            return original_ac(image, cutoff, ignore)

        _autocontrast_pil._daguerre_patched = True
        pil._autocontrast_pil = _autocontrast_pil


_quiet = False


def _silence_imgaug(ia: ModuleType) -> None:
    """Once per process: no deprecation chatter from imgaug (its own DeprecationWarning class, on
    every construction of a renamed augmenter) nor from what it calls (PiecewiseAffine: scikit-image's
    `estimate`, on every image). Filters, not ``catch_warnings`` around each call: that swaps the
    process-wide filter list and races between threads."""
    global _quiet
    if not _quiet:
        warnings.filterwarnings("ignore", category=ia.DeprecationWarning)
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings("ignore", category=category, module=r"imgaug\.")
        # a deprecated class (AffineCv2) warns at the line that constructs it, in daguerre
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"degrade\.ops\.imgaug_op")
        _quiet = True


def import_imgaug() -> ModuleType:
    """Return ``imgaug.augmenters`` with numpy patched first and imgaug's numpy-2 breakages mended."""
    patch_numpy()
    if not _quiet:
        with warnings.catch_warnings():  # the first import only, before any worker thread uses imgaug
            warnings.simplefilter("ignore")
            import imgaug.augmenters  # noqa: F401
        import imgaug

        _silence_imgaug(imgaug)
    import imgaug.augmenters as iaa
    from imgaug import random as iarandom

    if iarandom.GLOBAL_RNG is None:  # its first augmenter seeds it from numpy's global RNG, advancing the caller's stream:
        import numpy as np

        state = np.random.get_state()  # seed it now, as imgaug would (so np.random.seed still decides a caller's own
        try:  # unseeded augmenters), and put numpy's stream back; daguerre reseeds per sample (imgaug_op._seed_tree)
            iarandom.get_global_rng()
        finally:
            np.random.set_state(state)
    _patch_imgaug(iaa)
    return iaa
