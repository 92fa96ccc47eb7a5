"""explain_dataset: batching, padding, keys per example, resumable output, sharding."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr as ja
from jaxattr.errors import ArgumentError

DATA = np.random.default_rng(0).normal(size=(7, 4))


def score(x):
    return jnp.sum(jnp.sin(x) * jnp.arange(1.0, 5.0))


def noisy(x, key):
    return x * jax.random.normal(key, x.shape)


def test_matches_vmap_with_padding_of_last_batch():
    maps = ja.explain_dataset(ja.saliency(score), DATA, batch_size=3, progress=False)
    np.testing.assert_allclose(maps, np.cos(DATA) * np.arange(1.0, 5.0), rtol=1e-12)


def test_keys_per_example_make_results_independent_of_batch_size():
    key = jax.random.key(3)
    a = ja.explain_dataset(noisy, DATA, batch_size=2, key=key, progress=False)
    b = ja.explain_dataset(noisy, DATA, batch_size=5, key=key, progress=False)
    np.testing.assert_array_equal(a, b)
    expected = np.stack([noisy(DATA[i], jax.random.fold_in(key, i)) for i in range(7)])
    np.testing.assert_allclose(a, expected, rtol=1e-12)
    assert not np.allclose(a[0] / DATA[0], a[1] / DATA[1])  # examples get different noise


def test_out_file_resumes_after_last_finished_batch(tmp_path, capsys):
    out = tmp_path / "maps.npy"
    full = ja.explain_dataset(ja.saliency(score), DATA, batch_size=2, out=out)
    assert "7/7 examples" in capsys.readouterr().err
    np.testing.assert_allclose(full, np.cos(DATA) * np.arange(1.0, 5.0), rtol=1e-12)
    # simulate an interruption after two batches: rows 0-3 done (marked), rows 4-6 lost
    arr = np.load(out, mmap_mode="r+")
    arr[:4] = -1.0
    arr[4:] = 0.0
    arr.flush()
    (tmp_path / "maps.npy.done").write_text("4")
    resumed = ja.explain_dataset(ja.saliency(score), DATA, batch_size=2, out=out, progress=False)
    np.testing.assert_array_equal(resumed[:4], -1.0)  # not recomputed
    np.testing.assert_allclose(resumed[4:], full[4:], rtol=1e-12)


def test_bad_arguments():
    with pytest.raises(ArgumentError, match="batch_size=0 must be a positive int"):
        ja.explain_dataset(ja.saliency(score), DATA, batch_size=0)
    with pytest.raises(ArgumentError, match="key must be a PRNG key"):
        ja.explain_dataset(noisy, DATA, key=3)
    with pytest.raises(ArgumentError, match="data is empty"):
        ja.explain_dataset(ja.saliency(score), DATA[:0])
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    with pytest.raises(ArgumentError, match="axis='model' is not an axis"):
        ja.explain_dataset(ja.saliency(score), DATA, mesh=mesh, axis="model")


def test_out_file_of_other_shape_rejected(tmp_path):
    out = tmp_path / "m.npy"
    ja.explain_dataset(ja.saliency(score), DATA, out=out, progress=False)
    with pytest.raises(ArgumentError, match="expected float64\\[5, 4\\]"):
        ja.explain_dataset(ja.saliency(score), DATA[:5], out=out, progress=False)


def test_sharded_over_four_host_devices_matches_single_device():
    code = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np
        import jaxattr as ja
        assert len(jax.devices()) == 4
        mesh = jax.make_mesh((4,), ("data",))
        x = np.random.default_rng(0).normal(size=(10, 5)).astype(np.float32)
        f = lambda x: jnp.sum(jax.nn.relu(x * jnp.arange(1.0, 6.0)) ** 2)
        a = ja.explain_dataset(ja.rectgrad(f, q=50.0), x, batch_size=8, mesh=mesh, progress=False)
        b = np.stack([ja.rectgrad(f, q=50.0)(xi) for xi in x])
        np.testing.assert_allclose(a, b, rtol=1e-6)
        try:
            ja.explain_dataset(ja.saliency(f), x, batch_size=6, mesh=mesh)
        except ValueError as e:
            assert "multiple of the mesh axis" in str(e)
        else:
            raise AssertionError("no error")
        print("SHARDED-OK")
        """
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert "SHARDED-OK" in res.stdout, res.stderr[-3000:]
