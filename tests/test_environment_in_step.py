"""pyproject.toml, environment.yml, constraints.txt and the installed packages agree."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

import pytest
import yaml

from workflows import paths

ROOT = paths.REPO_ROOT
#: environment.yml may name these besides the project's own dependencies.
CONDA_ONLY = {"python", "pip", "jupyterlab"}
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _name(requirement: str) -> str:
    match = NAME.match(requirement)
    assert match, requirement
    return normalise(match.group(1))


def pyproject_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return list(project["dependencies"]) + list(project["optional-dependencies"]["test"])


def conda_names() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    return {_name(dep) for dep in env["dependencies"] if isinstance(dep, str)}


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"constraints.txt: {line!r} is not an exact pin (name==version)"
        pins[normalise(name)] = version.strip()
    return pins


PYPROJECT = pyproject_requirements()


def test_helpers_read_the_files():
    names = {_name(r) for r in PYPROJECT}
    assert {"numpy", "pandas", "pymc", "pytest", "pytest-timeout"} <= names
    assert "jupyterlab" in conda_names()
    assert constraints()["numpy"]
    assert normalise("Et_XMLFile") == normalise("et-xmlfile") == "et-xmlfile"


def test_pyproject_and_environment_yml_name_the_same_packages():
    pyproject = {_name(r) for r in PYPROJECT}
    conda = conda_names()
    assert pyproject - conda == set(), "in pyproject.toml, missing from environment.yml"
    assert conda - pyproject - CONDA_ONLY == set(), "in environment.yml, missing from pyproject.toml"


def test_environment_yml_installs_the_project_with_pip():
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert pip_sections and "-e ." in pip_sections[0]


@pytest.mark.parametrize("requirement", PYPROJECT, ids=_name)
def test_dependency_is_pinned_and_installed_at_the_pin(requirement):
    name = _name(requirement)
    pins = constraints()
    assert name in pins, f"{name} is not pinned in constraints.txt"
    installed = importlib.metadata.version(name)
    assert installed == pins[name], f"{name}: installed {installed}, constraints.txt pins {pins[name]}"


def test_pins_satisfy_the_ranges_in_pyproject():
    from packaging.requirements import Requirement

    pins = constraints()
    for requirement in PYPROJECT:
        req = Requirement(requirement)
        assert req.specifier.contains(pins[normalise(req.name)], prereleases=True), requirement
