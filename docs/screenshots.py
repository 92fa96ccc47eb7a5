"""Look at the built site in a real browser: ``python docs/screenshots.py``.

Builds the site (``docs/build.py``; ``--no-build`` reuses ``docs/_build/html``), serves it on
localhost, and has headless Chromium (Debian's package: ``apt-get install chromium``) render and
screenshot three pages into ``docs/_screenshots/``:

- ``home.png``: the home page, which must load its figure;
- ``method.png``: a method page (``methods/backprop``), which must load its figure;
- ``api.png``: an API page (``api/transforms``), which must show the signature of
  ``jaxattr.rectgrad``.

"Loaded" is read off the server: the browser must have requested the figure and received it
(HTTP 200, a PNG). The signature is read off the DOM after the browser ran the page's scripts
(``--dump-dom``). A screenshot that is one flat colour fails too. Exit status 0 when every check
holds; each check prints one line.
"""

from __future__ import annotations

import argparse
import functools
import html
import http.server
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

DOCS = Path(__file__).resolve().parent
SITE = DOCS / "_build" / "html"
OUT = DOCS / "_screenshots"
PAGES = {  # name: (page, what must be on it)
    "home": ("index.html", {"figure": "methods.png"}),
    "method": ("methods/backprop.html", {"figure": "backprop.png"}),
    "api": ("api/transforms.html", {"signature": "jaxattr.rectgrad"}),
}
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--virtual-time-budget=5000"]


class _Log(http.server.SimpleHTTPRequestHandler):
    served: list[tuple[str, int]] = []

    def log_request(self, code="-", size="-"):
        self.served.append((self.path, int(code) if str(code).isdigit() else 0))

    def log_message(self, format, *args):  # requests are checked, not printed
        pass


def _serve(root: Path):
    handler = functools.partial(_Log, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    sys.exit("headless Chromium not found: apt-get install chromium (Debian's package)")


def _run(browser: str, profile: str, *args: str) -> str:
    cmd = [browser, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


def _flat(png: Path) -> bool:
    import matplotlib.image

    img = matplotlib.image.imread(png)
    return float(img[..., :3].std()) < 1e-3


def _signature(dom: str, name: str) -> str | None:
    """The text of the signature line ``<dt ... id="name">...</dt>`` of the rendered page."""
    m = re.search(rf'<dt[^>]*id="{re.escape(name)}"[^>]*>(.*?)</dt>', dom, flags=re.S)
    if m is None:
        return None
    text = html.unescape(re.sub(r"<[^>]+>", "", m.group(1)))
    text = re.sub(r"\s+", " ", text).replace("¶", "").replace("[source]", "")
    return text.strip()


def check(browser: str, base: str, name: str, page: str, want: dict) -> list[str]:
    """Screenshot one page and check it; returns the failures (empty when it is right)."""
    png = OUT / f"{name}.png"
    failures = []
    with tempfile.TemporaryDirectory() as profile:
        _Log.served.clear()
        _run(browser, profile, "--window-size=1280,1400", f"--screenshot={png}", f"{base}/{page}")
        served = list(_Log.served)
        dom = _run(browser, profile, "--dump-dom", f"{base}/{page}")
    if not png.exists() or _flat(png):
        failures.append(f"{name}: the screenshot is missing or one flat colour")
    if (fig := want.get("figure")) is not None:
        got = [(p, code) for p, code in served if p.split("?")[0].endswith("/" + fig)]
        ok = any(code == 200 for _, code in got) and fig in dom
        print(f"{name}: {page}: figure {fig}: requested {got or 'never'}, "
              f"{'in the DOM' if fig in dom else 'NOT in the DOM'}")
        if not ok:
            failures.append(f"{name}: the browser did not load the figure {fig}")
    if (sig := want.get("signature")) is not None:
        text = _signature(dom, sig)
        print(f"{name}: {page}: signature: {text!r}")
        if not text or "(" not in text or ")" not in text:
            failures.append(f"{name}: no signature of {sig} on the page")
    print(f"{name}: screenshot {png.relative_to(DOCS.parent)}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-build", action="store_true", help="reuse docs/_build/html")
    parser.add_argument("--notebooks", type=Path, default=None,
                        help="passed to docs/build.py (notebooks the test suite executed)")
    args = parser.parse_args(argv)
    if not args.no_build:
        sys.path.insert(0, str(DOCS))
        import build

        notebooks = ["--notebooks", str(args.notebooks)] if args.notebooks else []
        if build.main(notebooks) != 0:
            return 1
    browser = _chromium()
    print(subprocess.run([browser, "--version"], capture_output=True, text=True).stdout.strip())
    OUT.mkdir(exist_ok=True)
    server = _serve(SITE)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        failures = [f for name, (page, want) in PAGES.items()
                    for f in check(browser, base, name, page, want)]
    finally:
        server.shutdown()
    for f in failures:
        print("FAILED:", f)
    print("all checks hold" if not failures else f"{len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
