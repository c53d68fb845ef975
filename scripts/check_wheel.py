"""Check what a built wheel ships; run by scripts/test.sh after `python -m build`.

    python scripts/check_wheel.py dist/django_tiered_cache-*.whl

The wheel must hold every file of the two packages as they are in the source
tree (modules, ``py.typed``, templates and static files; not ``__pycache__`` or
dotfiles such as ``.gitkeep``) and nothing else but its ``.dist-info``: no
``tests`` and no ``testproject``. Exits 1 and lists the problems otherwise.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tiered_cache", "tiered_cache_admin")
REQUIRED = {"tiered_cache/py.typed"}  # no wheel without type information


def source_files() -> set[str]:
    files = set()
    for package in PACKAGES:
        for path in (REPO_ROOT / package).rglob("*"):
            relative = path.relative_to(REPO_ROOT)
            hidden = any(part.startswith(".") for part in relative.parts)
            if path.is_file() and not hidden and "__pycache__" not in relative.parts:
                files.add(relative.as_posix())
    return files


def problems(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        names = {name for name in archive.namelist() if not name.endswith("/")}
    found = []
    for name in sorted((source_files() | REQUIRED) - names):
        found.append(f"missing: {name}")
    for name in sorted(names):
        top = name.split("/", 1)[0]
        if top not in PACKAGES and not top.endswith(".dist-info"):
            found.append(f"unexpected: {name}")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python scripts/check_wheel.py WHEEL", file=sys.stderr)
        return 2
    wheel = Path(argv[0])
    found = problems(wheel)
    for line in found:
        print(f"{wheel.name}: {line}", file=sys.stderr)
    if not found:
        print(f"{wheel.name}: contents OK ({', '.join(PACKAGES)}, py.typed)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
