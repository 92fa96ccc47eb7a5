"""The public API is fully annotated: every public function and class ``__init__`` of the
modules below has an annotation on each parameter (``*args`` and ``**kwargs`` too; not ``self``)
and on its return. Public: as tests/public_api.py says, and defined in a jaxattr module."""

import importlib
import inspect
from collections.abc import Callable, Iterator

from public_api import ours, public

MODULES = [
    "jaxattr", "jaxattr.relevance", "jaxattr.layer", "jaxattr.difference", "jaxattr.backprop",
    "jaxattr.noise", "jaxattr.path", "jaxattr.batch", "jaxattr.errors", "jaxattr.derivatives",
    "jaxattr.theory", "jaxattr.slowroll", "jaxattr.plot", "jaxattr.data", "jaxattr.models",
    "jaxattr.metrics",
]


def public_callables() -> Iterator[tuple[str, Callable, bool]]:
    """(qualified name, function, is a method) of each public function and class ``__init__``."""
    for module_name in MODULES:
        for name, obj in public(importlib.import_module(module_name)).items():
            if not ours(obj):
                continue
            if inspect.isfunction(obj):
                yield f"{module_name}.{name}", obj, False
            elif inspect.isclass(obj) and inspect.isfunction(obj.__init__) and ours(obj.__init__):
                yield f"{module_name}.{name}.__init__", obj.__init__, True


def missing_annotations(fn: Callable, is_method: bool) -> list[str]:
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())[1 if is_method else 0:]  # not self
    missing = [p.name for p in params if p.annotation is inspect.Parameter.empty]
    if sig.return_annotation is inspect.Signature.empty:
        missing.append("return")
    return missing


def test_public_api_is_annotated():
    found = list(public_callables())
    assert len(found) > 100  # the walk sees the API (98 functions and 18 __init__ today)
    offenders = [f"{name}: {', '.join(missing)}" for name, fn, is_method in found
                 if (missing := missing_annotations(fn, is_method))]
    assert not offenders, "public callables without annotations:\n" + "\n".join(offenders)
