"""What counts as jaxattr's public API, for the tests that check it (tests/test_api.py: every
public callable is annotated; tests/test_release.py: every public name is in docs/api/).

Public: listed in the module's ``__all__``, else a name without a leading underscore that a
jaxattr module defines (re-exported JAX or numpy names are not ours)."""

from types import ModuleType


def ours(obj: object) -> bool:
    return getattr(obj, "__module__", "").split(".")[0] == "jaxattr"


def public(module: ModuleType) -> dict[str, object]:
    """The public names of ``module`` and what they are bound to."""
    names = getattr(module, "__all__", None)
    if names is None:
        return {n: v for n, v in vars(module).items() if not n.startswith("_") and ours(v)}
    return {n: getattr(module, n) for n in names}
