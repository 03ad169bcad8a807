"""Run the CLI in-process (fast) or as a subprocess (what users see)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cli


@dataclass
class Result:
    code: int
    out: str
    err: str


def run(capsys, *args: str) -> Result:
    capsys.readouterr()
    try:
        cli.main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def run_subprocess(*args: str, env: dict | None = None, timeout: int = 120) -> Result:
    p = subprocess.run(
        [sys.executable, "-c", "import cli; cli.main()", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return Result(p.returncode, p.stdout, p.stderr)


ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter at the repository root: module state (registries, global
    random generators, the heap) that no earlier test has touched."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def python_ok(code: str, timeout: int = 600) -> str:
    """:func:`run_python`, which must succeed (the end of its stderr in the failure): its stdout."""
    r = run_python(code, timeout)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def one_line_error(r: Result) -> bool:
    lines = [line for line in r.err.strip().splitlines() if line.strip()]
    return r.code != 0 and len(lines) >= 1 and all("Traceback" not in line for line in lines)


class Hung(BaseException):
    """Raised into a block that waited too long: not an OSError (TimeoutError is one), which the code under test may catch."""


@contextmanager
def fails_if_it_hangs(seconds: int = 60):
    """Fail (:class:`Hung`) instead of waiting for ever in the block: an open of a FIFO with no writer is interrupted."""

    def interrupt(signum, frame):
        signal.alarm(5)  # caught and waiting again: interrupted again
        raise Hung(f"still waiting after {seconds} s (a FIFO opened?)")

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def refusals_of_fifo_and_zero(tmp_path, name: str, module: str, function: str, memory_cap: bool = False) -> list[str]:
    """Call ``module.function(FOLDER)`` in a fresh interpreter for a folder holding a FIFO named ``name`` and one
    holding a link of that name to /dev/zero; the messages of what each raised (the old code: a TimeoutExpired, not
    a test run that never ends). ``memory_cap``: 2 GiB of address space, so that reading /dev/zero fails fast."""
    import os

    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo" / name)
    (tmp_path / "zero").mkdir()
    (tmp_path / "zero" / name).symlink_to("/dev/zero")
    cap = "import resource; resource.setrlimit(resource.RLIMIT_AS, (2**31, 2**31))\n" if memory_cap else ""
    code = (f"{cap}from pathlib import Path\nfrom {module} import {function}\nfor d in ('fifo', 'zero'):\n    try:\n"
            f"        {function}(Path({str(tmp_path)!r}) / d)\n    except Exception as e:\n        print(e)\n")  # fmt: skip
    r = run_python(code, timeout=60)
    assert not r.stderr, r.stderr[-2000:]
    return r.stdout.splitlines()
