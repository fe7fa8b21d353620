"""The lock (constraints.txt) pins every dependency pyproject.toml declares, each at a version
its range allows: what README's commands install is what the ranges promise.

`ENSEMBLE_LOCK` names another lock file to check: the upgrade check sets it to the lock it is
about to write (benchmarks/upgrade_check.sh)."""

import os
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

REPO = Path(__file__).resolve().parents[1]


def lock_pins() -> dict[str, Version]:
    pins = {}
    lock = Path(os.environ.get("ENSEMBLE_LOCK", REPO / "constraints.txt"))
    for line in lock.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version.strip(), f"not name==version: {line!r}"
        pins[canonicalize_name(name)] = Version(version.strip())
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in [*project["dependencies"], *extras["test"], *extras["mlflow"]]]


def test_every_declared_dependency_is_pinned_within_its_range():
    pins = lock_pins()
    for req in declared():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is declared but not in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pins[name]}, outside {req}"
        )


def test_every_runtime_range_has_an_upper_bound():
    """An untested next major release is kept out (ruff is pinned exactly: its rules move)."""
    for req in declared():
        assert any(s.operator in ("<", "==", "~=") for s in req.specifier), str(req)
