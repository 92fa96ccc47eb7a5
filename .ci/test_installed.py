"""Smoke tests of jaxattr as installed from its wheel, run by ``.ci/installed`` from a temporary
directory outside the source tree, in a fresh virtualenv holding only the wheel, its
dependencies and pytest. A file missing from the package fails here.

Environment: ``JAXATTR_SOURCE`` (the source tree, which must not be what is imported) and
``JAXATTR_README`` (its README.md, whose "Ten lines" block is run).
"""

import importlib
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SOURCE = Path(os.environ["JAXATTR_SOURCE"]).resolve()
README = Path(os.environ["JAXATTR_README"])
JAXATTR = str(Path(sys.executable).parent / "jaxattr")  # the console script the wheel installed
SUBMODULES = ("backprop", "noise", "path", "relevance", "difference", "layer", "batch", "errors",
              "derivatives", "theory", "slowroll", "plot", "data", "models", "metrics", "demo",
              "cli")


def test_the_installed_package_is_imported_not_the_source_tree():
    import jaxattr

    where = Path(jaxattr.__file__).resolve()
    assert SOURCE not in where.parents, f"imported from the source tree: {where}"
    assert "site-packages" in where.parts
    assert importlib.metadata.version("jaxattr") == jaxattr.__version__
    assert (where.parent / "py.typed").is_file()
    files = [str(f) for f in importlib.metadata.files("jaxattr") or []]
    assert any(f.endswith("licenses/LICENSE") for f in files), "LICENSE not in the wheel"


@pytest.mark.parametrize("name", SUBMODULES)
def test_every_public_submodule_imports(name):
    importlib.import_module(f"jaxattr.{name}")


def test_every_module_of_the_source_tree_is_installed():
    import jaxattr

    installed = Path(jaxattr.__file__).resolve().parent
    expected = {p.relative_to(SOURCE / "jaxattr") for p in (SOURCE / "jaxattr").rglob("*.py")}
    missing = sorted(str(p) for p in expected if not (installed / p).is_file())
    assert not missing, f"in the source tree, not in the wheel: {missing}"


def test_the_ten_lines_of_the_readme():
    text = README.read_text()
    start = text.index("## Ten lines\n")
    end = text.find("\n## ", start + 1)
    (block,) = re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)
    namespace: dict = {}
    exec(compile(block, "README.md (Ten lines)", "exec"), namespace)
    assert namespace["rect"].shape == namespace["guided"].shape == namespace["sg"].shape == (8, 10)


def test_cli_version():
    import jaxattr

    for cmd in ([JAXATTR, "--version"], [sys.executable, "-m", "jaxattr", "--version"]):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        assert out.strip() == f"jaxattr {jaxattr.__version__}"


def test_cli_explain_a_tiny_dataset(tmp_path):
    import jax
    import jax.numpy as jnp

    import jaxattr as ja

    (tmp_path / "tinymodel.py").write_text(
        "import jax, jax.numpy as jnp\n"
        "w1 = jax.random.normal(jax.random.key(0), (16, 6))\n"
        "w2 = jax.random.normal(jax.random.key(1), (3, 16))\n"
        "def score(x, y):\n"
        "    return (w2 @ jax.nn.relu(w1 @ x))[y]\n")
    x = np.random.default_rng(0).normal(size=(10, 6)).astype(np.float32)
    y = np.arange(10, dtype=np.int32) % 3
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    subprocess.run([JAXATTR, "explain", "tinymodel:score", "x.npy,y.npy", "--method",
                    "rectgrad", "--q", "90", "--out", "maps", "--batch-size", "4"],
                   cwd=tmp_path, check=True, capture_output=True, text=True)
    (leaf,) = sorted((tmp_path / "maps").glob("*.npy"))
    maps = np.load(leaf)
    sys.path.insert(0, str(tmp_path))
    try:
        from tinymodel import score
    finally:
        sys.path.remove(str(tmp_path))
    want = jax.vmap(ja.rectgrad(score, q=90))(jnp.asarray(x), jnp.asarray(y))
    np.testing.assert_allclose(maps, np.asarray(want), rtol=1e-5, atol=1e-6)
    assert np.abs(maps).sum() > 0
