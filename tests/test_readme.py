"""The README's Python examples run as written (the ten lines and "Explaining a class")."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks(section: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    body = text[start:end if end != -1 else None]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


@pytest.mark.parametrize("section", ["Ten lines", "Explaining a class",
                                     "LRP, AttnLRP and DeepLIFT",
                                     "Attribution at an intermediate"])
def test_readme_examples_run(section):
    blocks = _python_blocks(section)
    assert blocks, f"no python block under '## {section}'"
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small example layers warn that q lets few units pass
        for block in blocks:
            exec(compile(block, f"README.md ({section})", "exec"), namespace)
    if section == "Explaining a class":  # the asserts ran; check what they cover
        assert namespace["maps"].shape == (8, 10) and namespace["sg"].shape == (8, 10)
