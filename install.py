"""Install Model Shelf's dependencies into the interpreter running this script.

ComfyUI-Manager runs this after installing ``requirements.txt``; running it by hand with
ComfyUI's own python (``python install.py``) does the same. Each requirement is installed on
its own, so one that fails is named clearly while the rest still install.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"


def requirements(path: Path = REQUIREMENTS) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def install(reqs: list[str], python: str = sys.executable) -> list[tuple[str, str]]:
    """pip-install each requirement; returns ``(requirement, pip's last error line)`` failures."""
    failed = []
    for req in reqs:
        result = subprocess.run(
            [python, "-m", "pip", "install", "--disable-pip-version-check", req],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            errors = [ln for ln in result.stderr.splitlines() if ln.strip()] or ["(no output)"]
            failed.append((req, errors[-1].strip()))
    return failed


def main() -> int:
    reqs = requirements()
    print(f"Model Shelf: installing {len(reqs)} requirements into {sys.executable}")
    failed = install(reqs)
    if not failed:
        print("Model Shelf: all requirements installed")
        return 0
    for req, reason in failed:
        print(f"Model Shelf: FAILED to install {req}: {reason}", file=sys.stderr)
    print(
        f"Model Shelf: {len(failed)} of {len(reqs)} requirements failed; fix the above, then run "
        f"'{sys.executable} -m pip install -r {REQUIREMENTS}'",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
