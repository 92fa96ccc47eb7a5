"""explain_dataset: per-example arguments and keys, data sources, pytree outputs, the output
directory (manifest, fingerprint, atomic progress, resume), progress, bad input, sharding.
The 2-process jax.distributed test is in tests/test_multihost.py."""

import io
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr as ja
from jaxattr.errors import ArgumentError, ArgumentTypeError

RNG = np.random.default_rng(0)
DATA = RNG.normal(size=(7, 4))
LABELS = np.array([0, 3, 1, 2, 2, 0, 1])
W = RNG.normal(size=(4, 4))


def score(x):
    return jnp.sum(jnp.sin(x) * jnp.arange(1.0, 5.0))


def saliency(x):
    return jax.grad(score)(x)


def expected_saliency(x):
    return np.cos(x) * np.arange(1.0, 5.0)


def logits(x):
    return jnp.tanh(x @ W)


def of_label(x, y):  # the classifier case: the gradient of the label's logit
    return jax.grad(lambda x: logits(x)[y])(x)


def expected_of_label(xs, ys):  # by hand: d tanh(x W)_y / dx = (1 - tanh^2) W[:, y]
    z = np.tanh(xs @ W)
    return (1 - z[np.arange(len(ys)), ys] ** 2)[:, None] * W[:, ys].T


def noisy(x, key):
    return x * jax.random.normal(key, x.shape)


def run(attr, data, **kw):
    kw.setdefault("progress", False)
    return ja.explain_dataset(attr, data, **kw)


# ------------------------------------------------------------------ calling rule and keys


def test_matches_closed_form_with_padding_of_last_batch():
    maps = run(saliency, DATA, batch_size=3)
    np.testing.assert_allclose(maps, expected_saliency(DATA), rtol=1e-12)


def test_tuple_data_spreads_into_arguments_labels_as_targets():
    maps = run(of_label, (DATA, LABELS), batch_size=3)
    np.testing.assert_allclose(maps, expected_of_label(DATA, LABELS), rtol=1e-12)
    as_list = run(of_label, [DATA, LABELS], batch_size=4)
    np.testing.assert_array_equal(as_list, maps)


def test_dict_data_is_one_argument():
    maps = run(lambda ex: of_label(ex["x"], ex["y"]), {"x": DATA, "y": LABELS}, batch_size=2)
    np.testing.assert_allclose(maps, expected_of_label(DATA, LABELS), rtol=1e-12)


def test_key_is_the_second_argument_and_per_example():
    key = jax.random.key(3)

    def attr(x, k, y):  # g(x, key, *args), the noise transforms' convention
        return of_label(x, y) + jax.random.normal(k, x.shape)

    a = run(attr, (DATA, LABELS), batch_size=2, key=key)
    b = run(attr, (DATA, LABELS), batch_size=5, key=key)
    np.testing.assert_array_equal(a, b)
    noise = np.stack([jax.random.normal(jax.random.fold_in(key, i), (4,)) for i in range(7)])
    np.testing.assert_allclose(a, expected_of_label(DATA, LABELS) + noise, rtol=1e-12)
    legacy = run(attr, (DATA, LABELS), batch_size=3, key=jax.random.key_data(key))
    np.testing.assert_array_equal(legacy, a)


def test_jaxattr_transforms_take_labels_at_the_end():
    def f(x, y):  # score of one example for its label
        return jnp.tanh(jax.nn.relu(x * np.arange(1.0, 5.0)) @ W)[y]

    key = jax.random.key(2)
    for attr, kw in ((ja.rectgrad(f, q=50.0), {}), (ja.guided_backprop(f), {}),
                     (ja.smoothgrad(ja.saliency(f), sigma=0.1, n=3), {"key": key}),
                     (ja.integrated_gradients(f, steps=4), {})):
        maps = run(attr, (DATA, LABELS), batch_size=3, **kw)
        extra = [(jax.random.fold_in(key, i),) if kw else () for i in range(7)]
        expected = np.stack([attr(DATA[i], *extra[i], LABELS[i]) for i in range(7)])
        np.testing.assert_allclose(maps, expected, rtol=1e-10, atol=1e-12)
        assert np.abs(maps).sum() > 0


# ------------------------------------------------------------------ data sources


def test_numpy_memmap_jax_array_and_iterable_give_the_same_maps(tmp_path):
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=DATA.dtype,
                                   shape=DATA.shape)
    mm[:] = DATA
    mm.flush()
    ref = expected_of_label(DATA, LABELS)
    from_mm = run(of_label, (np.load(tmp_path / "x.npy", mmap_mode="r"), LABELS), batch_size=3)
    from_jax = run(of_label, (jnp.asarray(DATA), jnp.asarray(LABELS)), batch_size=3)

    def loader():  # batches of any size (2, 4, 0, 1) are re-cut into batch_size = 3
        for a, b in ((0, 2), (2, 6), (6, 6), (6, 7)):
            yield DATA[a:b], LABELS[a:b]

    calls = []
    from_iter = run(of_label, loader(), batch_size=3, callback=lambda d, t: calls.append((d, t)))
    for maps in (from_mm, from_jax, from_iter):
        np.testing.assert_allclose(maps, ref, rtol=1e-12)
    assert calls == [(3, None), (6, None), (7, None)]  # total unknown for an iterable


def test_reads_only_one_batch_at_a_time():
    class Lazy:  # a dataset "larger than RAM": only slices are ever read
        shape, dtype = DATA.shape, DATA.dtype
        reads: list = []

        def __getitem__(self, s):
            self.reads.append((s.start, s.stop))
            return DATA[s]

    maps = run(saliency, Lazy(), batch_size=3)
    np.testing.assert_allclose(maps, expected_saliency(DATA), rtol=1e-12)
    assert max(b - a for a, b in Lazy.reads) <= 3
    assert sorted(set(Lazy.reads)) == [(0, 3), (3, 6), (6, 7)]


def test_pytree_outputs_in_memory_and_on_disk(tmp_path):
    def several(x, y):
        return {"saliency": saliency(x), "target": (of_label(x, y), logits(x)[y])}

    mem = run(several, (DATA, LABELS), batch_size=3)
    disk = run(several, (DATA, LABELS), batch_size=3, out=tmp_path / "o")
    for res in (mem, disk):
        np.testing.assert_allclose(res["saliency"], expected_saliency(DATA), rtol=1e-12)
        np.testing.assert_allclose(res["target"][0], expected_of_label(DATA, LABELS),
                                   rtol=1e-12)
        np.testing.assert_allclose(res["target"][1],
                                   np.tanh(DATA @ W)[np.arange(7), LABELS], rtol=1e-12)
    assert isinstance(disk["saliency"], np.memmap)
    files = sorted(f for f in os.listdir(tmp_path / "o") if f.endswith(".npy"))
    assert files == ["saliency.npy", "target_0.npy", "target_1.npy"]
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert [o["shape"] for o in manifest["outputs"]] == [[4], [4], []]


def test_bfloat16_output_is_stored_as_float32_that_plain_numpy_reads(tmp_path):
    def low(x):
        return {"bf16": saliency(x).astype(jnp.bfloat16),
                "f8": saliency(x).astype(jnp.float8_e5m2), "f32": saliency(x)}

    mem = run(low, DATA, batch_size=3)
    assert mem["bf16"].dtype == jnp.bfloat16  # in memory: the compute dtype
    with pytest.raises(Interrupt):  # resume a bf16 run: the fingerprint must match
        run(low, DATA, batch_size=3, out=tmp_path, callback=_interrupt_after(3))
    disk = run(low, DATA, batch_size=3, out=tmp_path)
    for name in ("bf16", "f8"):
        on_disk = np.load(tmp_path / f"{name}.npy")  # no ml_dtypes needed: float32 values
        assert on_disk.dtype == np.float32 and disk[name].dtype == np.float32
        np.testing.assert_array_equal(on_disk, np.asarray(mem[name], np.float32))
        np.testing.assert_array_equal(disk[name], on_disk)
    assert np.load(tmp_path / "f32.npy").dtype == np.float64  # numpy dtypes are kept as they are
    outputs = json.loads((tmp_path / "manifest.json").read_text())["outputs"]
    assert [(o["name"], o["dtype"], o.get("compute_dtype")) for o in outputs] == [
        ("bf16", "float32", "bfloat16"), ("f32", "float64", None), ("f8", "float32", "float8_e5m2")]


# ------------------------------------------------------------------ output directory, resume


def test_output_directory_layout_and_manifest(tmp_path):
    key = jax.random.key(0)
    maps = run(noisy, DATA, batch_size=3, key=key, out=tmp_path)
    assert isinstance(maps, np.memmap) and not maps.flags.writeable
    np.testing.assert_array_equal(np.load(tmp_path / "attribution.npy"), maps)
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["complete"] and m["rows"] == 7 and m["batches"] == 3
    fp = m["fingerprint"]
    assert fp["data"]["shapes"] == [[4]] and fp["data"]["dtypes"] == ["float64"]
    assert fp["batch_size"] == 3
    assert fp["key"]["data"] == np.asarray(jax.random.key_data(key)).tolist()
    assert fp["layout"] == {"process_count": 1, "rows": [[0, 3]]}
    assert len(fp["attr_fn"]) == 32 and len(m["data_hash"][0]) == 32
    assert json.loads((tmp_path / "progress" / "p00000.json").read_text()) == {"batches": 3}


class Interrupt(Exception):
    pass


def _interrupt_after(k):
    def callback(done, total):
        if done >= k:
            raise Interrupt
    return callback


def test_kill_and_resume_loses_nothing_and_recomputes_only_the_rest(tmp_path):
    with pytest.raises(Interrupt):  # the writer fails after committing batch 1 (rows 0-3)
        run(of_label, (DATA, LABELS), batch_size=2, out=tmp_path, callback=_interrupt_after(4))
    progress = json.loads((tmp_path / "progress" / "p00000.json").read_text())
    assert progress == {"batches": 2}
    assert not json.loads((tmp_path / "manifest.json").read_text())["complete"]
    # a torn write: rows of the batch in flight on disk, but never committed
    raw = np.load(tmp_path / "attribution.npy", mmap_mode="r+")
    raw[4:] = 99.0
    raw.flush()
    calls = []
    maps = run(of_label, (DATA, LABELS), batch_size=2, out=tmp_path,
               callback=lambda d, t: calls.append(d))
    assert calls == [6, 7]  # resumed after the last committed batch
    np.testing.assert_allclose(maps, expected_of_label(DATA, LABELS), rtol=1e-12)
    again = []
    run(of_label, (DATA, LABELS), batch_size=2, out=tmp_path, callback=lambda d, t: again.append(d))
    assert again == []  # complete: nothing recomputed


def test_a_run_that_dies_writing_rows_never_commits_them(tmp_path, monkeypatch):
    from jaxattr.batch import _output

    write_rows = _output.DiskSink.write_rows

    def failing(self, leaf, first_row, rows):  # the disk fails while writing batch 1 (rows 2-3)
        if first_row >= 2:
            raise OSError(28, "No space left on device")
        write_rows(self, leaf, first_row, rows)

    with monkeypatch.context() as m:
        m.setattr(_output.DiskSink, "write_rows", failing)
        with pytest.raises(OSError, match="No space left"):
            run(of_label, (DATA, LABELS), batch_size=2, out=tmp_path)
    progress = json.loads((tmp_path / "progress" / "p00000.json").read_text())
    assert progress == {"batches": 1}  # batch 1's rows never reached disk: not committed
    assert (tmp_path / "progress" / "p00000.hashes").stat().st_size == 16  # one batch's hash
    calls = []
    maps = run(of_label, (DATA, LABELS), batch_size=2, out=tmp_path,
               callback=lambda d, t: calls.append(d))
    assert calls == [4, 6, 7]  # resumed at batch 1
    np.testing.assert_array_equal(maps, run(of_label, (DATA, LABELS), batch_size=2))


def test_iterable_resume(tmp_path):
    def loader():
        for i in range(0, 7, 2):
            yield {"x": DATA[i:i + 2]}

    f = lambda ex: saliency(ex["x"])
    with pytest.raises(Interrupt):
        run(f, loader(), batch_size=3, out=tmp_path, callback=_interrupt_after(3))
    assert np.load(tmp_path / "attribution.npy").shape == (0, 4)  # header: rows unknown yet
    maps = run(f, loader(), batch_size=3, out=tmp_path)
    np.testing.assert_allclose(maps, expected_saliency(DATA), rtol=1e-12)
    assert np.load(tmp_path / "attribution.npy").shape == (7, 4)
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["complete"] and m["rows"] == 7 and m["fingerprint"]["data"]["rows"] is None

    def longer(k):
        yield {"x": np.concatenate([DATA, DATA])[:k]}

    with pytest.raises(ArgumentError, match=r"data differs .* batch 2 \(examples 6..7\) of"):
        run(f, longer(8), batch_size=3, out=tmp_path)
    run(f, longer(6), batch_size=3, out=tmp_path / "six")
    with pytest.raises(ArgumentError, match="data differs .* more examples than the completed"):
        run(f, longer(7), batch_size=3, out=tmp_path / "six")
    with pytest.raises(ArgumentError, match=r"data differs .* fewer examples \(3\) than"):
        run(f, longer(3), batch_size=3, out=tmp_path / "six")

    def changed():
        x = DATA.copy()
        x[6, 0] += 1.0  # only the last row changes
        yield {"x": x}

    with pytest.raises(ArgumentError, match=r"batch 2 \(examples 6..6\) of process 0 has another"):
        run(f, changed(), batch_size=3, out=tmp_path)


def test_resume_with_another_run_is_refused_naming_what_changed(tmp_path):
    key = jax.random.key(0)
    run(noisy, DATA, batch_size=2, key=key, out=tmp_path)
    cases = [
        (dict(data=DATA + 1e-9), r"data differs .* batch 0 \(examples 0..1\) of process 0"),
        (dict(data=DATA[:5]), r"holds another run: number of examples \(7 -> 5\)"),
        (dict(data=DATA.astype(np.float32)), r"data dtypes \(\['float64'\] -> \['float32'\]\)"),
        (dict(data=DATA[:, :3]), r"data shapes \(\[\[4\]\] -> \[\[3\]\]\)"),
        (dict(batch_size=3), r"batch_size \(2 -> 3\)"),
        (dict(key=jax.random.key(1)), r"key \(another PRNG key"),
        (dict(attr=lambda x, k: 2 * noisy(x, k)), r"attr_fn \(its traced jaxpr or constants"),
    ]
    for change, message in cases:
        kw = dict(attr=noisy, data=DATA, batch_size=2, key=key, out=tmp_path) | change
        with pytest.raises(ArgumentError, match="explain_dataset: .*" + message):
            run(kw.pop("attr"), kw.pop("data"), **kw)
    fresh = run(noisy, DATA[:5], batch_size=2, key=key, out=tmp_path, overwrite=True)
    np.testing.assert_array_equal(fresh, np.stack([noisy(DATA[i], jax.random.fold_in(key, i))
                                                   for i in range(5)]))
    assert json.loads((tmp_path / "manifest.json").read_text())["rows"] == 5


def test_missing_leaf_file_is_reported(tmp_path):
    run(saliency, DATA, batch_size=4, out=tmp_path)
    os.remove(tmp_path / "attribution.npy")
    with pytest.raises(ArgumentError, match="has a manifest but no attribution.npy"):
        run(saliency, DATA, batch_size=4, out=tmp_path)
    maps = run(saliency, DATA, batch_size=4, out=tmp_path, overwrite=True)
    np.testing.assert_allclose(maps, expected_saliency(DATA), rtol=1e-12)


def test_constants_captured_by_attr_fn_are_fingerprinted(tmp_path):
    w = np.ones(4)
    run(lambda x: jax.grad(lambda x: jnp.sum(jnp.sin(x) * w))(x), DATA, out=tmp_path)
    w2 = w.copy()
    w2[0] = 2.0
    with pytest.raises(ArgumentError, match="attr_fn"):
        run(lambda x: jax.grad(lambda x: jnp.sum(jnp.sin(x) * w2))(x), DATA, out=tmp_path)


def test_process_count_mismatch_on_resume(tmp_path):
    run(saliency, DATA, batch_size=2, out=tmp_path)
    path = tmp_path / "manifest.json"
    m = json.loads(path.read_text())
    m["fingerprint"]["layout"] = {"process_count": 2, "rows": [[0, 1], [1, 2]]}
    path.write_text(json.dumps(m))
    with pytest.raises(ArgumentError, match=r"process count \(the run was written by 2 "
                                            r"process\(es\), this run has 1\)"):
        run(saliency, DATA, batch_size=2, out=tmp_path)


def test_unwritable_or_foreign_output_fails_before_any_compute(tmp_path):
    traced = []

    def attr(x):
        traced.append(1)
        return saliency(x)

    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(ArgumentError, match=r"explain_dataset: out='.*file/sub' is not writable"):
        run(attr, DATA, out=tmp_path / "file" / "sub")
    with pytest.raises(ArgumentError, match=r"explain_dataset: out='.*file' is an existing file, "
                                            r"not a directory; expected a directory"):
        run(attr, DATA, out=tmp_path / "file")
    assert traced == []
    with pytest.raises(ArgumentError, match=r"is not empty and holds no jaxattr.explain_dataset"):
        run(attr, DATA, out=tmp_path)
    with pytest.raises(ArgumentError, match="is not empty"):
        run(attr, DATA, out=tmp_path, overwrite=True)  # never deletes files it did not write
    assert (tmp_path / "file").read_text() == "not a directory"


# ------------------------------------------------------------------ progress


def test_plain_progress_line_when_not_a_terminal(capsys):
    run(saliency, DATA, batch_size=2, progress=True)
    assert "explain_dataset: 7/7 examples" in capsys.readouterr().err
    run(saliency, DATA, batch_size=2, progress=False)
    assert capsys.readouterr().err == ""


def test_tqdm_bar_on_a_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    monkeypatch.setattr(sys, "stderr", stream)
    run(saliency, DATA, batch_size=2, progress=True)
    text = stream.getvalue()
    assert "explain_dataset" in text and "7/7" in text and "ex/s" in text


# ------------------------------------------------------------------ bad input


def test_bad_arguments():
    def gen(batches):
        yield from batches

    cases = [
        (dict(batch_size=0), ArgumentError, "explain_dataset: batch_size=0 is < 1"),
        (dict(batch_size=2.5), ArgumentTypeError, "batch_size=2.5 has type float"),
        (dict(batch_size=True), ArgumentTypeError, "batch_size=True is a bool"),
        (dict(key=3), ArgumentTypeError, "explain_dataset: key=3 has type int"),
        (dict(data=DATA[:0]), ArgumentError, r"data=.* is empty \(leading axis has size 0\)"),
        (dict(data=(DATA, LABELS[:5])), ArgumentError,  # shapes, never the arrays' contents
         r"explain_dataset: data=\(<array of shape \(7, 4\) and dtype float64>, <array of shape "
         r"\(5,\) and dtype int64>\) has leaves of different leading \(example\) sizes: data\[0\] "
         r"has shape \(7, 4\), data\[1\] has shape \(5,\); expected one leading"),
        (dict(data={"x": DATA, "y": LABELS[:5]}), ArgumentError,
         r"data=\{'x': <array of shape \(7, 4\) .*: data\['x'\] has shape \(7, 4\), "
         r"data\['y'\] has shape \(5,\)"),
        (dict(data=[[1.0, 2.0]]), ArgumentTypeError, "has non-array leaves of type"),
        (dict(data=gen([])), ArgumentError, r"is empty \(the iterable yielded no batches\)"),
        (dict(data=gen([(DATA[:2], LABELS[:2]), DATA[2:]]), attr=lambda x, y: saliency(x)),
         ArgumentError,
         "yielded batch 1 of structure .*; expected every batch like batch 0"),
        (dict(data=gen([DATA[:2], DATA[2:, :3]])), ArgumentError,
         r"yielded batch 1 .* \[\(\(3,\), float64\)\]; expected .* \[\(\(4,\), float64\)\]"),
        (dict(data=gen([(DATA[:2], LABELS[:3])]), attr=lambda x, y: saliency(x)),
         ArgumentError, r"yielded batch 0 whose leaves have different leading sizes \[2, 3\]"),
        (dict(attr=np.ones(3)), ArgumentTypeError, "attr_fn=.* is an array, not a function"),
        (dict(progress="yes"), ArgumentTypeError, "progress='yes' has type str"),
        (dict(callback=3), ArgumentTypeError, "callback=3 has type int"),
        (dict(mesh="data"), ArgumentTypeError, "mesh='data' has type str"),
    ]
    for change, error, message in cases:
        kw = dict(attr=saliency, data=DATA) | change
        with pytest.raises(error, match=message):
            run(kw.pop("attr"), kw.pop("data"), **kw)
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    with pytest.raises(ArgumentError, match="axis='model' is not a known option"):
        run(saliency, DATA, mesh=mesh, axis="model")


def test_several_processes_need_an_out_directory(monkeypatch):
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    with pytest.raises(ArgumentError, match="out=None is required when running on 2 processes"):
        run(saliency, DATA)


def test_float_labels_used_as_an_index_are_named():
    floats = LABELS.astype(np.float64)
    expected = (r"holds floats \(one per example\) that attr_fn uses as an index \(JAX: .*"
                r"integer.*\); expected integer labels \(an int dtype such as int32\)")
    with pytest.raises(ArgumentTypeError, match=r"explain_dataset: data\[1\]=<array of shape "
                                                r"\(7,\) and dtype float64> " + expected):
        run(of_label, (DATA, floats))
    with pytest.raises(ArgumentTypeError, match=r"explain_dataset: data\['y'\]=.* " + expected):
        run(lambda ex: of_label(ex["x"], ex["y"]), {"x": DATA, "y": floats})
    take = lambda x, y: jax.grad(lambda x: jnp.take(logits(x), y))(x)  # "indices must have an
    with pytest.raises(ArgumentTypeError, match=r"data\[1\]=.* " + expected):  # integer type"
        run(take, (DATA, floats))
    with pytest.raises(ArgumentTypeError, match=r"explain_dataset: data batch\[1\]=.* " + expected):
        run(of_label, iter([(DATA, floats)]))
    # a float per-example argument that is not an index is fine
    scaled = run(lambda x, s: saliency(x) * s, (DATA, floats), batch_size=4)
    np.testing.assert_allclose(scaled, expected_saliency(DATA) * floats[:, None], rtol=1e-12)


def test_a_score_function_where_an_attribution_function_is_expected_is_refused(tmp_path):
    message = (r"explain_dataset: attr_fn=<function score .*> returns a scalar per example \(a "
               r"score function\?\); expected an attribution function returning a map per "
               r"example, such as ja.saliency\(score\)")
    with pytest.raises(ArgumentTypeError, match=message):
        run(score, DATA)
    with pytest.raises(ArgumentTypeError, match="returns a scalar per example"):
        run(lambda x, y: (logits(x)[y], jnp.sum(x)), (DATA, LABELS), out=tmp_path)
    assert not (tmp_path / "manifest.json").exists()
    # maps of any non-scalar shape, and pytrees with scalar leaves beside maps, are fine
    np.testing.assert_allclose(run(lambda x: saliency(x)[:1], DATA), expected_saliency(DATA)[:, :1],
                               rtol=1e-12)
    score_and_map = run(lambda x: (score(x), saliency(x)), DATA)
    np.testing.assert_allclose(score_and_map[1], expected_saliency(DATA), rtol=1e-12)
    scalars = DATA[:, 0]  # one scalar input per example: its map is a scalar too
    np.testing.assert_allclose(run(jax.grad(jnp.sin), scalars), np.cos(scalars), rtol=1e-12)


# ------------------------------------------------------------------ sharding (4 host devices)


def test_four_host_devices_pad_a_batch_that_is_not_a_multiple_of_the_mesh(tmp_path):
    code = textwrap.dedent(
        """
        import sys, jax, jax.numpy as jnp, numpy as np
        import jaxattr as ja
        assert len(jax.devices()) == 4
        x = np.random.default_rng(0).normal(size=(10, 5)).astype(np.float32)
        y = np.arange(10) % 5
        f = lambda x, y: jax.grad(lambda x: jnp.tanh(x * jnp.arange(1.0, 6.0))[y])(x)
        ref = np.stack([f(x[i], y[i]) for i in range(10)])
        # float32 1 - tanh^2 of a saturated unit keeps only its last digits: programs compiled
        # for one example and for a batch may differ there by a few ulp of 1 (atol); a wrong
        # row, padding kept or an example dropped is off by O(0.1)
        tol = dict(rtol=1e-6, atol=16 * np.finfo(np.float32).eps)
        for b in (6, 8):  # 6 is padded to 8 (4 devices), the padding dropped
            a = ja.explain_dataset(f, (x, y), batch_size=b, progress=False,
                                   out=sys.argv[1] + f"/b{b}")
            np.testing.assert_allclose(a, ref, **tol)
        mesh = jax.make_mesh((2, 2), ("data", "model"))  # replicated over "model"
        a = ja.explain_dataset(f, (x, y), batch_size=3, mesh=mesh, progress=False)
        np.testing.assert_allclose(a, ref, **tol)
        print("SHARDED-OK")
        """
    )
    flags = os.environ.get("XLA_FLAGS", "")  # tests/conftest.py's, plus 4 host devices
    env = {**os.environ, "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert "SHARDED-OK" in res.stdout, res.stderr[-3000:]
