"""Release habits: one version, a changelog and a citation that agree with it, the license text,
and an API reference that documents every public name."""

import importlib
import importlib.metadata
import re
from pathlib import Path

from public_api import public

import jaxattr

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api"


def test_version_is_written_once_and_installed_metadata_agrees():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert 'version = { attr = "jaxattr.__version__" }' in pyproject
    assert not re.search(r'^version\s*=\s*"', pyproject, flags=re.M), "a second version string"
    assert re.fullmatch(r"\d+\.\d+\.\d+", jaxattr.__version__)
    assert importlib.metadata.version("jaxattr") == jaxattr.__version__


def test_changelog_is_keep_a_changelog_and_its_newest_release_is_the_version():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "Keep a Changelog" in text and "## [Unreleased]" in text
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", text, flags=re.M)
    assert releases, "no released version in CHANGELOG.md"
    assert releases[0][0] == jaxattr.__version__
    assert releases[-1][0] == "0.1.0"
    for heading in re.findall(r"^### (.+)$", text, flags=re.M):
        assert heading in {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_citation_names_the_three_papers_and_the_software():
    text = (ROOT / "CITATION.cff").read_text()
    assert re.search(r"^cff-version: 1\.2\.0$", text, flags=re.M)
    assert re.search(r"^type: software$", text, flags=re.M)
    assert re.search(r"^license: Apache-2\.0$", text, flags=re.M)
    for paper in ("arXiv:1902.04893", "arXiv:1806.03000", "arXiv:hep-ph/0405155"):
        assert text.count(paper) == 1, paper
    assert len(re.findall(r"^  - type: ", text, flags=re.M)) == 3


def test_license_is_the_apache_2_text():
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "END OF TERMS AND CONDITIONS" in text
    assert 'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text()


def _public(module) -> set[str]:
    return {f"{module.__name__}.{n}" for n in public(module)}


def _documented() -> set[str]:
    """Names the API pages document: explicit directives, and automodule ``:members:``."""
    found: set[str] = set()
    for page in API.glob("*.md"):
        module = "jaxattr"
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            if m := re.match(r"\.\. currentmodule:: (\S+)", line):
                module = m.group(1)
            elif m := re.match(r"\.\. auto(?:function|class|data):: (\S+)", line):
                name = m.group(1)
                found.add(name if name.startswith("jaxattr.") else f"{module}.{name}")
            elif m := re.match(r"\.\. automodule:: (\S+)", line):
                options = []
                for opt in lines[i + 1:]:
                    if not opt.startswith("   :"):
                        break
                    options.append(opt.strip())
                if ":members:" in options:
                    mod = importlib.import_module(m.group(1))
                    excluded = {f"{mod.__name__}.{n.strip()}" for o in options
                                if o.startswith(":exclude-members:")
                                for n in o.split(":", 2)[2].split(",")}
                    found |= _public(mod) - excluded
    return found


def test_the_api_reference_documents_every_public_name():
    modules = ["jaxattr", "jaxattr.relevance", "jaxattr.layer", "jaxattr.derivatives",
               "jaxattr.theory", "jaxattr.metrics", "jaxattr.data", "jaxattr.models",
               "jaxattr.slowroll", "jaxattr.errors", "jaxattr.plot.attribution",
               "jaxattr.plot.series", "jaxattr.plot.spectrum"]
    public = set().union(*(_public(importlib.import_module(m)) for m in modules))
    documented = _documented()
    # a name re-exported by jaxattr is documented once, as jaxattr.<name>
    top = {n.rsplit(".", 1)[1] for n in _public(jaxattr)}
    missing = sorted(n for n in public - documented
                     if not (n.rsplit(".", 1)[1] in top and f"jaxattr.{n.rsplit('.', 1)[1]}"
                             in documented))
    assert not missing, f"public but not in docs/api/: {missing}"
