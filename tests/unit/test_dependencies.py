"""The library depends on what it imports (Django, croniter) and loads no optional package on import."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
# packages of the extras (postgres, mysql, otel, prometheus, demo, test, docs) that a plain install does not bring
OPTIONAL = [
    "requests",
    "environ",
    "psycopg",
    "psycopg_pool",
    "MySQLdb",
    "pytest",
    "hypothesis",
    "mkdocs",
    "opentelemetry",
]


def test_the_runtime_dependencies_are_django_and_croniter():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    names = sorted(spec.split(">")[0].split("=")[0].split("[")[0].strip().lower() for spec in project["dependencies"])
    assert names == ["croniter", "django"]
    assert "requests>=2.31" in project["optional-dependencies"]["demo"]


def test_importing_the_package_loads_no_optional_module():
    """In a fresh interpreter (this one has pytest and Django's settings loaded): nothing optional, nor croniter."""
    code = (
        "import json, sys\n"
        "import django_scheduled_actions\n"
        f"print(json.dumps(sorted(m for m in {[*OPTIONAL, 'croniter']!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(out.stdout) == []
    # and the check is able to fail: the same probe sees a module once something imports it
    code_with = code.replace("import django_scheduled_actions\n", "import django_scheduled_actions, json, requests\n")
    out = subprocess.run([sys.executable, "-c", code_with], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(out.stdout) == ["requests"]
