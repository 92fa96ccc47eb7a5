"""jaxattr.demo.run_demo (the logic of `jaxattr demo`): progress, figure, JSON report, errors."""

import json
import re
import time

import jax
import numpy as np
import pytest

from jaxattr.demo import COLOUR_SCALE, MAX_IMAGES, run_demo
from jaxattr.errors import ArgumentError, ArgumentTypeError

LINE = re.compile(r"^\[\s*(?P<t>[\d.]+) s\] ")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    stamps: list[float] = []

    def log(s):
        lines.append(s)
        stamps.append(time.perf_counter())

    t0 = time.perf_counter()
    report = run_demo(out=out, quick=True, steps=20, images=2,
                      methods=("saliency", "rectgrad x input"), log=log)
    return report, lines, [t0, *stamps], out


def test_progress_line_per_stage_never_silent_for_30_s(demo):
    report, lines, stamps, out = demo
    timed = [ln for ln in lines if LINE.match(ln)]
    for stage in ("data: shapes", "training: compiling", "trained 20 steps",
                  "explained with saliency", "explained with rectgrad q=98 x input",
                  "metrics of 2 methods", "saved"):
        assert any(stage in ln for ln in timed), stage
    # half width on 32x32: 32*32*16, 32*32*16, 16*16*32, 16*16*32, 128 units; q=98 keeps
    # round((n - 1) * 0.02): 327.66 -> 328, 163.82 -> 164, 2.54 -> 3
    assert any("328/328/164/164/3 of 16384/16384/8192/8192/128" in ln for ln in timed)
    assert report["config"]["rectgrad_units_kept"] == "328/328/164/164/3"
    elapsed = [float(LINE.match(ln)["t"]) for ln in timed]
    assert elapsed == sorted(elapsed)
    gaps = np.diff(stamps)
    assert gaps.max() < 30.0, f"silent for {gaps.max():.1f} s"


def test_json_report_next_to_the_figure(demo):
    report, lines, _, out = demo
    png = out / "methods.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert on_disk["figure"] == str(png)
    assert on_disk["versions"]["jax"] == jax.__version__
    assert set(on_disk["timings_s"]) >= {"data", "train", "explain", "metrics", "figure", "total"}
    assert on_disk["colour_scale"] == COLOUR_SCALE
    assert "red = positive" in COLOUR_SCALE and "99th percentile" in COLOUR_SCALE
    assert [c["passed"] for c in on_disk["checks"]] == [True] * len(on_disk["checks"])
    assert {c["check"] for c in on_disk["checks"]} >= {
        "out is a writable directory", "test accuracy above chance",
        "every map is finite and shaped like its input",
        "object masks non-empty and disjoint from the distractor"}
    assert list(on_disk["metrics"]) == ["saliency", "rectgrad q=98 x input"]
    for row in on_disk["metrics"].values():
        for k in ("object mass", "distractor mass", "pointing game"):
            assert 0.0 <= row[k] <= 1.0
        assert row["TV"] > 0 and 0 < row["Gini"] < 1 and row["compile_s"] > 0
    # the printed table shows the same numbers
    table = {ln.split()[0]: ln for ln in lines if ln.startswith(("saliency ", "rectgrad "))}
    assert f"{on_disk['metrics']['saliency']['object mass']:.3f}" in table["saliency"]


def test_images_beyond_the_maximum_is_an_error_not_a_cap(tmp_path):
    lines = []
    t0 = time.perf_counter()
    with pytest.raises(ArgumentError, match=r"^run_demo: images=11 is more than the figure "
                                            rf"holds; expected an int in \[1, {MAX_IMAGES}\]"):
        run_demo(out=tmp_path, images=11, log=lines.append)
    assert lines == [] and time.perf_counter() - t0 < 1.0  # nothing ran
    # more images than classes (one per class): an error too, still before training
    with pytest.raises(ArgumentError, match=r"run_demo: images=7 is more than the 6 classes"):
        run_demo(out=tmp_path, images=7, log=lines.append)
    assert not any("train" in ln for ln in lines)


def test_unwritable_out_is_an_error_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    lines = []
    with pytest.raises(ArgumentError, match=r"^run_demo: out='.*a-file/sub' is not a writable "
                                            r"directory"):
        run_demo(out=blocker / "sub", log=lines.append)
    assert lines == []


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"dataset": "cifar"}, ArgumentError, "run_demo: dataset='cifar' is not a known option"),
    ({"images": 0}, ArgumentError, "run_demo: images=0 is < 1"),
    ({"images": 2.5}, ArgumentTypeError, "run_demo: images=2.5 has type float"),
    ({"steps": 0}, ArgumentError, "run_demo: steps=0 is < 1"),
    ({"q": 101}, ArgumentError, "run_demo: q=101 is out of range"),
    ({"methods": ("saliency", "lime")}, ArgumentError, "run_demo: methods='lime'"),
    ({"width": "double"}, ArgumentError, "run_demo: width='double'"),
])
def test_argument_errors(kwargs, exc, match, tmp_path):
    with pytest.raises(exc, match=match):
        run_demo(out=tmp_path, log=lambda s: None, **kwargs)
