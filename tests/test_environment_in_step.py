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
CONDA_ONLY = {"python", "pip"}
#: Optional extras: pinned and named in environment.yml like the rest; `make test` installs
#: "test", `make lab` also "lab".
EXTRAS = ("test", "lab")
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _name(requirement: str) -> str:
    match = NAME.match(requirement)
    assert match, requirement
    return normalise(match.group(1))


def pyproject_requirements(extras=EXTRAS) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    optional = project["optional-dependencies"]
    return list(project["dependencies"]) + [r for extra in extras for r in optional[extra]]


def conda_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    return {_name(dep): dep for dep in env["dependencies"] if isinstance(dep, str)}


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
#: What `make test` installs: each must be installed at its pin.
INSTALLED = pyproject_requirements(("test",))


def test_helpers_read_the_files():
    names = {_name(r) for r in PYPROJECT}
    assert {"numpy", "pandas", "pymc", "pytest", "pytest-timeout"} <= names
    assert "jupyterlab" in conda_names() and "jupyterlab" in {_name(r) for r in PYPROJECT}
    assert "nbconvert" in {_name(r) for r in INSTALLED}
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


def test_environment_yml_asks_for_the_same_versions_as_pyproject():
    from packaging.requirements import Requirement

    conda = conda_requirements()
    for requirement in PYPROJECT:
        req = Requirement(requirement)
        conda_req = Requirement(conda[_name(requirement)].replace(" ", ""))
        assert conda_req.specifier == req.specifier, (requirement, conda[_name(requirement)])


@pytest.mark.parametrize("requirement", INSTALLED, ids=_name)
def test_dependency_is_pinned_and_installed_at_the_pin(requirement):
    name = _name(requirement)
    pins = constraints()
    assert name in pins, f"{name} is not pinned in constraints.txt"
    installed = importlib.metadata.version(name)
    assert installed == pins[name], f"{name}: installed {installed}, constraints.txt pins {pins[name]}"


@pytest.mark.parametrize("requirement", sorted(set(PYPROJECT) - set(INSTALLED)), ids=_name)
def test_lab_dependency_is_pinned_and_at_the_pin_where_installed(requirement):
    """`make lab` installs these; `make test` does not, so they are checked where present."""
    name = _name(requirement)
    pins = constraints()
    assert name in pins, f"{name} is not pinned in constraints.txt"
    try:
        installed = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{name} is not installed here (make lab installs it)")
    assert installed == pins[name], f"{name}: installed {installed}, constraints.txt pins {pins[name]}"


def test_every_pin_is_installed_at_its_version_where_installed():
    """constraints.txt pins the whole environment, dependencies of dependencies too."""
    wrong = {}
    for name, version in constraints().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if installed != version:
            wrong[name] = (installed, version)
    assert not wrong, f"installed vs pinned: {wrong}"


def test_pins_satisfy_the_ranges_in_pyproject():
    from packaging.requirements import Requirement

    pins = constraints()
    for requirement in PYPROJECT:
        req = Requirement(requirement)
        assert req.specifier.contains(pins[normalise(req.name)], prereleases=True), requirement
