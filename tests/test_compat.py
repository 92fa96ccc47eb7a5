"""jaxattr._compat: each JAX-version difference has one function, tested here in every shape.

Where JAX's own version of a function exists on the installed JAX, the compat one is checked
against it; where a difference is a choice between two shapes (``get_bind_params``'s return,
``shard_map``'s parameter names), both shapes are fed to the compat function, whichever JAX is
installed. CI runs this file on the newest JAX and on the declared floor (``.ci/run``).
"""

import pathlib
import re
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.extend import core as jcore
from jax.sharding import PartitionSpec
from packaging.version import Version

from jaxattr import _compat as compat

ROOT = pathlib.Path(__file__).resolve().parent.parent
X = jnp.array([0.5, -1.0, 2.0], jnp.float32)


@jax.custom_vjp
def _cube(x):
    return x**3


_cube.defvjp(lambda x: (x**3, x), lambda x, g: (3 * x**2 * g,))


def _mesh():
    return jax.make_mesh((1,), ("x",))


# One program per higher-order primitive the interpreter handles, and how many bodies the one
# higher-order equation at its top level holds.
PROGRAMS = {
    "jit": (lambda x: jax.jit(jnp.sin)(x), 1),
    "scan": (lambda x: lax.scan(lambda c, a: (c + a, c * a), jnp.float32(0), x), 1),
    "cond": (lambda x: lax.cond(x.sum() > 0, jnp.sin, jnp.cos, x), 2),
    "while": (lambda x: lax.while_loop(lambda c: c.sum() < 10, lambda c: c * 2 + 1, x), 2),
    "custom_jvp": (jax.nn.relu, 1),
    "custom_vjp": (_cube, 1),
    "remat": (lambda x: jax.checkpoint(lambda y: jnp.sin(jnp.sin(y)))(x), 1),
    "shard_map": (lambda x: jax.shard_map(jnp.sin, mesh=_mesh(), in_specs=PartitionSpec(),
                                          out_specs=PartitionSpec())(x), 1),
}


def _higher_order_eqn(closed):
    eqns = [e for e in closed.jaxpr.eqns if list(compat.jaxprs_in_params(e.params))]
    assert len(eqns) == 1, [e.primitive.name for e in closed.jaxpr.eqns]
    return eqns[0]


def _opened(jaxprs):
    return [j.jaxpr if isinstance(j, jcore.ClosedJaxpr) else j for j in jaxprs]


def _jax_walks():
    """JAX's own walks over an equation's parameters on the installed JAX: the internal one
    (every version) and the public one (jax >= 0.10)."""
    from jax._src import core as src_core

    walks = [src_core.jaxprs_in_params]
    if hasattr(jcore, "jaxprs_in_params"):
        walks.append(jcore.jaxprs_in_params)
    return walks


# -- jaxprs_in_params ------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROGRAMS)
def test_jaxprs_in_params_finds_every_body_as_jax_does(name):
    fn, n_bodies = PROGRAMS[name]
    eqn = _higher_order_eqn(jax.make_jaxpr(fn)(X))
    found = list(compat.jaxprs_in_params(eqn.params))
    assert len(found) == n_bodies
    assert all(isinstance(j, (jcore.Jaxpr, jcore.ClosedJaxpr)) for j in found)
    for walk in _jax_walks():  # the same bodies, in the same order (JAX opens closed ones)
        assert [id(j) for j in _opened(found)] == [id(j) for j in walk(eqn.params)]


def test_jaxprs_in_params_keeps_closed_jaxprs_closed_with_their_constants():
    const = jnp.arange(3.0, dtype=jnp.float32)
    with_consts = jax.make_jaxpr(lambda x: x * const)(X)
    assert with_consts.consts  # the constant array is the ClosedJaxpr's constant
    open_ = with_consts.jaxpr
    params = {"a": with_consts, "branches": (open_, with_consts), "list": [open_], "n": 3,
              "name": "f", "nested": ((open_,),)}
    found = list(compat.jaxprs_in_params(params))
    assert [id(j) for j in found] == [id(with_consts), id(open_), id(with_consts), id(open_)]
    # the bodies JAX's own walks find, with the constants kept (JAX's walks ignore lists)
    tuples_only = {k: v for k, v in params.items() if k != "list"}
    for walk in _jax_walks():
        assert ([id(j) for j in _opened(compat.jaxprs_in_params(tuples_only))]
                == [id(j) for j in walk(tuples_only)])
    assert list(compat.jaxprs_in_params({})) == []


def test_closed():
    c = jax.make_jaxpr(jnp.sin)(X)
    assert compat.closed(c) is c
    wrapped = compat.closed(c.jaxpr)
    assert isinstance(wrapped, jcore.ClosedJaxpr)
    assert wrapped.jaxpr is c.jaxpr and list(wrapped.consts) == []


# -- bind: get_bind_params in both shapes, the equation's context ------------------------------


class _StubPrimitive:
    def __init__(self, bind_params):
        self._bind_params = bind_params

    def get_bind_params(self, params):
        return self._bind_params


class _StubEqn:
    def __init__(self, bind_params):
        self.params = {"p": 1}
        self.primitive = _StubPrimitive(bind_params)


def test_bind_params_accepts_both_shapes_of_get_bind_params():
    sub = object()
    old = compat.bind_params(_StubEqn(([sub], {"p": 1})))  # jax < 0.9: (subfuns, params)
    new = compat.bind_params(_StubEqn({"p": 1, "subfuns": (sub,)}))  # jax >= 0.9: one dict
    assert old == ((sub,), {"p": 1})
    assert new == ((), {"p": 1, "subfuns": (sub,)})
    assert compat.bind_params(_StubEqn(([], {"p": 1}))) == ((), {"p": 1})


def _eval_with_bind(closed, *args):
    """jax's eval_jaxpr, written with compat.bind (as the interpreter's default handler)."""
    env = {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    env.update(zip(closed.jaxpr.constvars, closed.consts, strict=True))
    env.update(zip(closed.jaxpr.invars, args, strict=True))
    for eqn in closed.jaxpr.eqns:
        outs = compat.bind(eqn, [read(v) for v in eqn.invars])
        assert len(outs) == len(eqn.outvars)
        for var, out in zip(eqn.outvars, outs, strict=True):
            if not isinstance(var, compat.DropVar):
                env[var] = out
    return [read(v) for v in closed.jaxpr.outvars]


@pytest.mark.parametrize("name", PROGRAMS)
def test_bind_evaluates_every_primitive_as_jax_does(name):
    fn, _ = PROGRAMS[name]
    closed = jax.make_jaxpr(fn)(X)
    expected = jcore.jaxpr_as_fun(closed)(X)
    got = _eval_with_bind(closed, X)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-6)
    # and under jit (bind with tracers), and differentiated (a custom rule is bound with it)
    np.testing.assert_allclose(jax.jit(lambda x: _eval_with_bind(closed, x))(X)[0],
                               expected[0], rtol=1e-6)
    if name in ("custom_jvp", "custom_vjp", "jit", "remat"):
        grad = jax.grad(lambda x: _eval_with_bind(closed, x)[0].sum())(X)
        np.testing.assert_allclose(grad, jax.grad(lambda x: fn(x).sum())(X), rtol=1e-6)


def test_rebind_replaces_parameters():
    closed = jax.make_jaxpr(lambda x: jax.jit(jnp.sin)(x))(X)
    eqn = _higher_order_eqn(closed)
    cos = jax.make_jaxpr(jnp.cos)(X)
    np.testing.assert_allclose(compat.rebind(eqn, [X], jaxpr=cos)[0], jnp.cos(X), rtol=1e-6)
    assert eqn.params["jaxpr"] is not cos  # the equation itself is unchanged


def test_primitive_name_is_the_newest_spelling():
    eqn = _higher_order_eqn(jax.make_jaxpr(PROGRAMS["jit"][0])(X))
    assert eqn.primitive.name in ("pjit", "jit")  # pjit in jax 0.6
    assert compat.primitive_name(eqn) == "jit"
    sin = jax.make_jaxpr(jnp.sin)(X).jaxpr.eqns[0]
    assert compat.primitive_name(sin) == "sin"


# -- DropVar -----------------------------------------------------------------------------------


def test_dropvar_is_jaxs_class_for_unread_outputs():
    assert compat.DropVar.__name__ == "DropVar"
    assert issubclass(compat.DropVar, jcore.Var)
    # a gradient's jaxpr: outputs nothing reads are DropVars where this JAX makes them
    closed = jax.make_jaxpr(jax.grad(lambda x: jax.jit(lambda y: (jnp.sin(y), jnp.cos(y)))(x)[0]))(
        1.0)
    seen = []

    def walk(jaxpr):
        jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
        for eqn in jaxpr.eqns:
            for v in eqn.outvars:
                assert isinstance(v, compat.DropVar) == (type(v).__name__ == "DropVar")
                seen.append(isinstance(v, compat.DropVar))
            for sub in compat.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(closed)
    assert seen and not all(seen)


# -- shard_map ---------------------------------------------------------------------------------


def test_shard_map_axis_names_in_both_spellings():
    mesh = jax.make_mesh((1,), ("x",))
    assert compat.shard_map_axis_names({"mesh": mesh, "manual_axes": frozenset({"x"})}) == {"x"}
    assert compat.shard_map_axis_names({"mesh": mesh,
                                        "newly_manual_axes": frozenset({"x"})}) == {"x"}
    assert compat.shard_map_axis_names({"mesh": mesh}) == {"x"}  # default: every mesh axis


def test_shard_map_rebuilds_the_equation():
    fn, _ = PROGRAMS["shard_map"]
    eqn = _higher_order_eqn(jax.make_jaxpr(fn)(X))
    assert compat.shard_map_axis_names(eqn.params) == {"x"}
    body = jcore.jaxpr_as_fun(compat.closed(eqn.params["jaxpr"]))
    np.testing.assert_allclose(compat.shard_map(eqn, body, [X])[0], jnp.sin(X), rtol=1e-6)
    np.testing.assert_allclose(jax.jit(lambda x: compat.shard_map(eqn, body, [x])[0])(X),
                               jnp.sin(X), rtol=1e-6)


# -- enable_x64 --------------------------------------------------------------------------------


def test_enable_x64_sets_64_bit_mode_inside_only():
    before = jax.config.jax_enable_x64
    for flag in (False, True):
        with compat.enable_x64(flag):
            assert jnp.zeros(()).dtype == (jnp.float64 if flag else jnp.float32)
        assert jax.config.jax_enable_x64 == before


# -- source lines ------------------------------------------------------------------------------


def test_source_line_and_file_name_the_user_frame():
    eqn = jax.make_jaxpr(lambda x: jnp.sin(x))(X).jaxpr.eqns[0]
    assert "test_compat.py" in compat.source_line(eqn)
    assert compat.source_file(eqn).endswith("test_compat.py")


# -- the declared range is the tested range ----------------------------------------------------


def _declared_floors() -> dict[str, Version]:
    """``{name: floor}`` of the ``"name>=floor"`` requirements in pyproject.toml."""
    text = (ROOT / "pyproject.toml").read_text()
    return {m.group(1).lower(): Version(m.group(2))
            for m in re.finditer(r'^\s*"([A-Za-z0-9_.-]+)>=([0-9][0-9.]*)"', text, re.MULTILINE)}


def _floor_pins() -> dict[str, Version]:
    text = (ROOT / ".ci" / "floor-constraints.txt").read_text()
    return {m.group(1).lower(): Version(m.group(2))
            for m in re.finditer(r"^([A-Za-z0-9_.-]+)==([0-9.]+)\s*$", text, re.MULTILINE)}


def test_ci_tests_the_declared_floor():
    """Each package .ci/floor pins is pinned at the floor pyproject.toml declares (jax and
    jaxlib at least): the declared range is the tested range ("keep in sync", as optax says)."""
    floors, pins = _declared_floors(), _floor_pins()
    assert {"jax", "jaxlib"} <= set(pins)
    for name, pin in pins.items():
        assert name in floors, f".ci/floor-constraints.txt pins {name}, which has no floor"
        assert pin == floors[name], (
            f"{name}: .ci/floor tests {pin}, pyproject.toml declares >={floors[name]}")


@pytest.mark.parametrize("version", [(3, 10, 14), (3, 11, 0)])
def test_add_note_keeps_notes_on_every_python(monkeypatch, version):
    # Exception.add_note is Python >= 3.11; the package declares 3.10 (PEP 678's __notes__ there)
    monkeypatch.setattr(compat, "sys", SimpleNamespace(version_info=version))
    e = ValueError("boom")
    compat.add_note(e, "first")
    compat.add_note(e, "second")
    assert e.__notes__ == ["first", "second"]
