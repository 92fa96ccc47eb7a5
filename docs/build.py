"""Build the documentation site strictly: ``python docs/build.py`` (``pip install -e ".[docs]"``).

1. Puts the notebooks of ``notebooks/`` into ``docs/notebooks/`` with their outputs: taken from
   ``--notebooks DIR`` when a run of the test suite already executed them there
   (``JAXATTR_NOTEBOOK_OUTPUT_DIR=DIR python -m pytest tests/test_notebooks.py``, as CI does) and
   their cells are this tree's, otherwise executed here with nbclient (``--full`` at the
   notebooks' full sizes, else at the suite's small sizes, ``JAXATTR_NOTEBOOK_SMALL=1``).
2. Runs ``sphinx-build -W --keep-going -n``: any warning (a broken cross-reference, link or
   image, a docstring Sphinx cannot read) fails the build. The site is written to
   ``docs/_build/html`` (``--out``); open ``index.html``.

Exit status 0 when the site built without a warning.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
NOTEBOOKS = ROOT / "notebooks"


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def _executed(path: Path, *, small: bool):
    """The notebook at ``path`` executed top to bottom (raises on the first failing cell)."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    env = {"MPLBACKEND": "Agg", **({"JAXATTR_NOTEBOOK_SMALL": "1"} if small else {})}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def prepare_notebooks(executed_dir: Path | None, *, full: bool, log=print) -> list[Path]:
    """Write every notebook of ``notebooks/``, with outputs, into ``docs/notebooks/``."""
    import nbformat

    out = DOCS / "notebooks"
    if executed_dir is not None and executed_dir.resolve() == out.resolve():
        raise SystemExit(f"--notebooks {executed_dir}: docs/notebooks is rewritten; pass another")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    written = []
    for src in sorted(NOTEBOOKS.glob("*.ipynb")):
        source = nbformat.read(src, as_version=4)
        done = executed_dir / src.name if executed_dir is not None else None
        nb = nbformat.read(done, as_version=4) if done is not None and done.exists() else None
        if nb is not None and not full and _cells(nb) == _cells(source):
            how = f"outputs of {done}"
        else:
            t0 = time.perf_counter()
            nb = _executed(src, small=not full)
            how = f"executed here in {time.perf_counter() - t0:.0f} s"
        code = [c for c in nb.cells if c.cell_type == "code"]
        if not all(c.get("execution_count") for c in code):
            raise RuntimeError(f"{src.name}: a code cell has not run ({how})")
        nbformat.write(nb, out / src.name)
        written.append(out / src.name)
        log(f"notebooks/{src.name}: {how}")
    return written


def build(out: Path, *, jobs: str = "1") -> int:
    """``sphinx-build`` with every warning an error; returns its exit status."""
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-n", "-q",
           "-j", jobs, str(DOCS), str(out)]
    return subprocess.call(cmd, cwd=ROOT, env={**os.environ, "MPLBACKEND": "Agg"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", type=Path, default=None,
                        help="a directory of notebooks the test suite executed")
    parser.add_argument("--full", action="store_true",
                        help="execute the notebooks at their full sizes (minutes)")
    parser.add_argument("--out", type=Path, default=DOCS / "_build" / "html")
    parser.add_argument("-j", "--jobs", default="1", help="sphinx-build's -j (default 1)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    prepare_notebooks(args.notebooks, full=args.full)
    status = build(args.out, jobs=args.jobs)
    verdict = "built" if status == 0 else "FAILED (warnings are errors)"
    print(f"docs {verdict} in {time.perf_counter() - t0:.0f} s: {args.out / 'index.html'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
