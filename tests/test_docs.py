"""The docs name tests that exist: the fault catalogue cites its tests by path."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INTERNAL = "RELIABILITY" + ".md"  # spelled apart so this file does not cite it


def test_every_test_the_fault_catalogue_cites_exists():
    text = (ROOT / "docs" / "faults.rst").read_text()
    cited = set(re.findall(r"(tests/[\w/]+\.py)::(\w+)", text))
    assert len(cited) > 50
    missing = [
        f"{path}::{name}"
        for path, name in sorted(cited)
        if not (ROOT / path).is_file()
        or not re.search(rf"def {name}\b", (ROOT / path).read_text())
    ]
    assert missing == []


def test_product_never_cites_internal_material():
    for folder in ("tiered_cache", "tests", "docs", "bench", "testproject"):
        for path in (ROOT / folder).rglob("*"):
            if (
                path.suffix in {".py", ".rst", ".md", ".html"}
                and "_build" not in path.parts
            ):
                assert INTERNAL not in path.read_text(), path
