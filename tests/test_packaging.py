"""environment.yml must install the same set as pyproject.toml (core + every extra)."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _norm(req: str) -> str:
    name, rest = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", req).groups()
    return re.sub(r"[-_.]+", "-", name).lower() + rest.replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_norm(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        wanted |= {_norm(r) for r in extra}
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    pip_items = {_norm(line.strip()[2:]) for line in lines[start + 1 :] if line.strip().startswith("- ")}
    assert pip_items == wanted, (sorted(pip_items - wanted), sorted(wanted - pip_items))
    assert "- python=3.11" in (ROOT / "environment.yml").read_text()


def test_setuptools_is_pinned_below_81():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.replace(" ", "").startswith("setuptools") and "<81" in d for d in deps)
