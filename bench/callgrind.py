"""Run a script under valgrind's callgrind and return the instructions it ran.

Instruction counts are repeatable on a busy machine where wall-clock times are
not; ``l2_instructions.py`` and ``policy_instructions.py`` measure with it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


def instructions(
    script: str, args: Sequence[str], out: Path, env: Mapping[str, str] | None = None
) -> int:
    """Return callgrind's "Collected" count for ``python script *args``."""
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    argv += [sys.executable, script, *args]
    run = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
    found = re.search(r"Collected : (\d+)", run.stderr)
    if found is None:
        raise RuntimeError(run.stderr[-2000:])
    return int(found.group(1))


def thread_instructions(
    script: str, args: Sequence[str], out: Path, env: Mapping[str, str] | None = None
) -> list[int]:
    """Return the instructions of each thread of ``python script *args``, the
    main thread first (callgrind's ``--separate-threads``): the caller's cost
    without the work background threads do for it."""
    argv = ["valgrind", "--tool=callgrind", "--separate-threads=yes"]
    argv += [f"--callgrind-out-file={out}", sys.executable, script, *args]
    run = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
    counts = []
    for path in sorted(out.parent.glob(f"{out.name}-*")):
        found = re.search(r"^totals: (\d+)", path.read_text(), re.MULTILINE)
        if found is not None:
            counts.append(int(found.group(1)))
    if not counts:
        raise RuntimeError(run.stderr[-2000:])
    return counts
