"""The dependency layout for a deploy with no edits (issue 22), checked offline.

Community Cloud reads the Pipfile (it comes before requirements.txt in its search order) and
pipenv takes torch from PyTorch's CPU index only; a local `pip install -r requirements.txt` reads
requirements.txt alone and must never need an index other than PyPI. These tests pin down what
can be known without Community Cloud: the files parse, say the same versions, and can't select a
CUDA build. Whether Community Cloud's pipenv run really fetches the CPU wheel is not checkable here.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYPI = "https://pypi.org/simple"
# Community Cloud's search order in each folder (entry point's folder first, then the root; here
# both are the root): https://docs.streamlit.io/deploy/streamlit-community-cloud/deploy-your-app/app-dependencies
CLOUD_ORDER = ["uv.lock", "Pipfile", "environment.yml", "requirements.txt", "pyproject.toml"]


def _requirements(path: Path) -> tuple[dict[str, str], list[str]]:
    """``{name: specifier}`` of a requirements file's pins, and its option lines (``-r``, ``--…``)."""
    pins, options = {}, []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-"):
            options.append(line)
            continue
        req = Requirement(line)
        pins[req.name.lower()] = str(req.specifier)
    return pins, options


@pytest.fixture(scope="module")
def pipfile() -> dict:
    return tomllib.loads((ROOT / "Pipfile").read_text())


def _spec(entry: str | dict) -> str:
    return entry if isinstance(entry, str) else entry["version"]


def test_pipfile_is_the_file_community_cloud_reads():
    present = [name for name in CLOUD_ORDER if (ROOT / name).exists()]
    assert present[0] == "Pipfile", f"Community Cloud would read {present[0]} first: {present}"
    # A lock written elsewhere would be installed as it is, index mapping or not: there is none.
    assert not (ROOT / "Pipfile.lock").exists()


def test_pipfile_pins_equal_requirements_txt(pipfile):
    pins, _ = _requirements(ROOT / "requirements.txt")
    packages = {name.lower(): _spec(entry) for name, entry in pipfile["packages"].items()}
    assert packages == pins
    assert all(re.fullmatch(r"==[0-9][0-9A-Za-z.]*", spec) for spec in packages.values()), packages
    assert not pipfile.get("dev-packages"), "dev tools stay in requirements-dev.txt; the deploy needs none"


def test_requirements_txt_needs_only_pypi():
    _, options = _requirements(ROOT / "requirements.txt")
    assert options == [], f"requirements.txt must install from PyPI alone (no index options): {options}"
    dev_pins, dev_options = _requirements(ROOT / "requirements-dev.txt")
    assert dev_options == ["-r requirements.txt"]
    assert not set(dev_pins) & set(_requirements(ROOT / "requirements.txt")[0]), "a pin repeated in the dev file"


def test_torch_and_only_torch_comes_from_the_cpu_index(pipfile):
    sources = {s["name"]: s for s in pipfile["source"]}
    assert {s["url"].rstrip("/") for s in sources.values()} == {PYPI, CPU_INDEX}
    assert all(s["verify_ssl"] is True for s in sources.values())
    # pipenv's default index is the first source: PyPI, for every package not mapped elsewhere.
    assert pipfile["source"][0]["url"].rstrip("/") == PYPI
    indexed = {name: entry["index"] for name, entry in pipfile["packages"].items()
               if isinstance(entry, dict) and "index" in entry}
    assert list(indexed) == ["torch"], indexed
    assert sources[indexed["torch"]]["url"].rstrip("/") == CPU_INDEX


def test_the_torch_pin_selects_the_cpu_build():
    # The CPU index names its Linux wheels 2.13.0+cpu; a pin without a local label matches it (PEP 440).
    spec = SpecifierSet(_requirements(ROOT / "requirements.txt")[0]["torch"])
    assert spec.contains("2.13.0+cpu")
    assert not spec.contains("2.14.0+cpu")


def test_nothing_can_select_an_nvidia_package(pipfile):
    text = (ROOT / "Pipfile").read_text()
    names = " ".join(pipfile["packages"]) + " " + " ".join(pipfile.get("dev-packages", {}))
    assert "nvidia" not in names.lower()
    urls = [s["url"] for s in pipfile["source"]]
    assert not any(re.search(r"/(cu\d+|rocm[\d.]*|nightly)\b", url) for url in urls), urls
    for name in ("requirements.txt", "requirements-dev.txt"):
        assert "nvidia" not in (ROOT / name).read_text().lower()
    # The comments may explain the CUDA build; no TOML value may name it.
    assert not re.search(r"=\s*[\"{][^\n]*(nvidia|cu\d{2,3})", text, re.IGNORECASE)


def test_python_version_is_stated_where_the_readme_says(pipfile):
    assert pipfile["requires"] == {"python_version": "3.11"}
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Deploy to Streamlit Community Cloud", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"Python version: pick 3\.11", section) and "Pipfile" in section
