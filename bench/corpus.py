"""Where the five standards documents of ``shared/corpus`` are (a helper, not a benchmark).

Looked for, in order: ``$ANJU_TEST_CORPUS`` (as the tests look), ``../shared/corpus`` from the
repository's root (where every developer and CI have it), ``/work/shared/corpus``. A benchmark that
measures over the corpus stops with a clear message when it is in none of them, rather than
measuring something else.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = "quality-management-guideline.txt"  # one of the five: a folder without it is not the corpus


PLACES = (ROOT.parent / "shared" / "corpus", Path("/work/shared/corpus"))


def candidates() -> list[Path]:
    found = [Path(p) for p in (os.environ.get("ANJU_TEST_CORPUS"),) if p]
    return [*found, *PLACES]


def corpus_dir() -> Path:
    """The corpus folder; SystemExit naming every place looked at when there is none."""
    for candidate in candidates():
        if (candidate / MARKER).is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates())
    raise SystemExit(
        f"the standards corpus (shared/corpus) is not on this machine: looked in {looked}; "
        "set ANJU_TEST_CORPUS to its folder"
    )


def corpus_files() -> list[Path]:
    files = sorted(corpus_dir().glob("*.txt"))
    if not files:
        raise SystemExit(f"no *.txt in {corpus_dir()}")
    return files
