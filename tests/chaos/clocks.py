"""A worker process whose wall clock is off by a fixed offset: Debian's libfaketime, faking the wall clock
only (``FAKETIME_DONT_FAKE_MONOTONIC=1``: timeouts and sleeps measure real time), with ``clock_shim.c``
preloaded before it so that sleeping works (see there)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .servers import CHAOS_ROOT

HERE = Path(__file__).resolve().parent
LIBFAKETIME = ("/usr/lib/x86_64-linux-gnu/faketime", "/usr/lib/aarch64-linux-gnu/faketime", "/usr/lib/faketime")


def _libfaketime() -> Path:
    for folder in LIBFAKETIME:
        lib = Path(folder) / "libfaketimeMT.so.1"
        if lib.exists():
            return lib
    raise RuntimeError("libfaketime not found: install Debian's faketime package (scripts/bootstrap.sh does)")


def _shim() -> Path:
    source, built = HERE / "clock_shim.c", CHAOS_ROOT / "clock_shim.so"
    if not built.exists() or built.stat().st_mtime < source.stat().st_mtime:
        CHAOS_ROOT.mkdir(parents=True, exist_ok=True)
        compiler = shutil.which("cc") or shutil.which("gcc") or "cc"
        subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(built), str(source)], check=True)
    return built


def skewed(seconds: float) -> dict[str, str]:
    """The environment of a process whose wall clock reads ``seconds`` ahead (negative: behind)."""
    return {
        "LD_PRELOAD": f"{_shim()} {_libfaketime()}",
        "FAKETIME": f"{seconds:+g}s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
