"""The package's shape holds: layers visible in the file list, contracts kept, no private reach-ins.

``make lint`` (run by CI) checks the same with ``lint-imports`` and ruff's SLF001; these tests make the
rules fail in the suite too, with a sentence saying which rule broke, so a contributor who only runs
``make test`` learns it before CI does.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "florence_ui"
LAYERS = ("core", "model", "render", "labelstudio", "batch", "export", "workspace", "ui")
TOP_LEVEL = {"__init__.py", "__main__.py", "errors.py", "cli.py", "examples", *LAYERS}


def _entries() -> set[str]:
    return {p.name for p in PACKAGE.iterdir() if p.name != "__pycache__"}


def test_the_package_is_its_layers_and_a_few_doors():
    """At most 13 top-level entries: the layers, the CLI, the exception tree, the examples.

    13, not 12, since the workspace (issue 14's durable review store, one SQLite file per named workspace) is a
    layer of its own: the page, the CLI and the exporters all read it, so it fits inside none of them.
    """
    entries = _entries()
    assert entries <= TOP_LEVEL, f"new top-level entries {sorted(entries - TOP_LEVEL)}: put them in a layer"
    assert len(entries) <= 13
    for layer in LAYERS:
        assert (PACKAGE / layer / "__init__.py").is_file(), f"{layer} is a package"
        assert ast_docstring(PACKAGE / layer / "__init__.py"), f"florence_ui/{layer}/__init__.py says why it exists"


def ast_docstring(path: Path) -> str | None:
    import ast

    return ast.get_docstring(ast.parse(path.read_text()))


def test_every_module_starts_with_why_it_exists():
    missing = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if not ast_docstring(p)]
    assert not missing, f"modules without a docstring saying why they exist: {missing}"


def test_import_contracts_are_kept():
    """import-linter's contracts in pyproject.toml: layer order, core pure, torch/gradio/SDK in one layer each."""
    binary = Path(sys.executable).parent / "lint-imports"
    if not binary.exists():
        binary = Path(shutil.which("lint-imports") or "lint-imports")
    out = subprocess.run([str(binary)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "broken" not in out.stdout.split("Contracts:")[-1].split("\n")[0] or " 0 broken" in out.stdout


def test_no_private_reach_ins_across_modules():
    """ruff's SLF001 on the product code: a reach-in is a missing API (noqa only for quarantined third-party privates)."""
    ruff = Path(sys.executable).parent / "ruff"
    out = subprocess.run([str(ruff), "check", "--select", "SLF001", "--output-format", "concise", "florence_ui", "tests"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stdout[-4000:]


def test_every_slf001_exception_says_why():
    """Each ``noqa: SLF001`` names its reason on the same line or in the comment line above it."""
    bare = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "tests").rglob("*.py")]:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if "noqa: SLF001" not in line:
                continue
            reason = line.split("noqa: SLF001", 1)[1].strip(" -")
            above = lines[i - 1].strip() if i else ""
            if not reason and not above.startswith("#"):
                bare.append(f"{path.relative_to(ROOT)}:{i + 1}")
    assert not bare, f"noqa: SLF001 without a reason: {bare}"


@pytest.mark.parametrize("layer", LAYERS)
def test_contributing_shows_every_layer(layer):
    text = (ROOT / "CONTRIBUTING.md").read_text()
    assert re.search(rf"`{layer}/?`", text), f"CONTRIBUTING.md's layer diagram does not name {layer}"
