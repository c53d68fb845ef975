"""Fetch Django's test suite at exactly the installed Django version.

The source is the sdist of ``django.__version__`` from PyPI, fetched with pip;
only its ``tests/`` directory (which holds ``runtests.py``) is extracted, into
``.cache/django-src/django-<version>/tests/`` (gitignored). Both the sdist and
the extracted tree are reused when present.

Run ``python -m tests.django_suite.fetch`` to fetch and print the path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import django

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".cache" / "django-src"
_DONE = ".extracted"


class FetchError(RuntimeError):
    """The Django sdist could not be downloaded or extracted."""


def _find_sdist(cache_dir: Path, version: str) -> Path | None:
    for name in (f"django-{version}.tar.gz", f"Django-{version}.tar.gz"):
        path = cache_dir / name
        if path.is_file():
            return path
    return None


def _download(cache_dir: Path, version: str) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--no-binary",
        ":all:",
        "--no-deps",
        f"django=={version}",
        "-d",
        str(cache_dir),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    sdist = _find_sdist(cache_dir, version)
    if proc.returncode != 0 or sdist is None:
        output = (proc.stdout + proc.stderr).strip()
        raise FetchError(
            f"could not download the Django {version} sdist from PyPI "
            f"(`{' '.join(cmd)}` exited {proc.returncode}):\n{output[-3000:]}"
        )
    return sdist


def _extract_tests(sdist: Path, dest: Path) -> None:
    """Extract ``<top>/tests/`` of ``sdist`` to ``dest/tests`` atomically."""
    staging = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            members = []
            for member in tar.getmembers():
                parts = member.name.split("/", 1)
                if len(parts) == 2 and parts[1].startswith("tests/"):
                    member.name = parts[1]
                    members.append(member)
            if not any(m.name == "tests/runtests.py" for m in members):
                raise FetchError(f"{sdist} has no tests/runtests.py")
            data_filter = getattr(tarfile, "data_filter", None)
            if data_filter is not None:
                tar.extractall(staging, members=members, filter=data_filter)
            else:  # pragma: no cover - Python < 3.11.4
                tar.extractall(staging, members=members)  # noqa: S202
        (staging / _DONE).write_text(sdist.name + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        try:
            os.replace(staging, dest)
        except OSError:
            # Another run finished the same extraction first.
            if not (dest / _DONE).exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fetch(cache_dir: Path = CACHE_DIR, version: str | None = None) -> Path:
    """Return the ``tests/`` directory of Django ``version`` (default: installed).

    Raises ``FetchError`` when the sdist cannot be downloaded or extracted.
    """
    version = version or django.__version__
    dest = cache_dir / f"django-{version}"
    tests_dir = dest / "tests"
    if (dest / _DONE).exists() and (tests_dir / "runtests.py").is_file():
        return tests_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    sdist = _find_sdist(cache_dir, version) or _download(cache_dir, version)
    try:
        _extract_tests(sdist, dest)
    except (tarfile.TarError, OSError, EOFError) as exc:
        sdist.unlink(missing_ok=True)  # a truncated download is fetched again
        raise FetchError(f"could not extract {sdist}: {exc}") from exc
    return tests_dir


def main() -> int:
    try:
        tests_dir = fetch()
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Django {django.__version__} test suite: {tests_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
