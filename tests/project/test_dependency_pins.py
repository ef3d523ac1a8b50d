"""Dependencies whose internals we read are capped below their next minor, in every requirements file.

``gradio_image_annotation``'s raw payload (box dicts, image value) is parsed by
the UI; a new minor may change it silently, so the requirement must not
float (issue 12). The files are read the way the dependency audit reads them.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import audit_deps  # noqa: E402

#: package → the first version we have not reviewed (the requirement must exclude it)
CAPPED = {"gradio-image-annotation": "0.6"}


@pytest.mark.parametrize("package", sorted(CAPPED))
def test_payload_parsed_dependencies_have_an_upper_bound(package):
    reqs = [r for r in audit_deps.direct_requirements() if canonicalize_name(r.name) == package]
    assert len(reqs) >= 3, f"{package} should be listed in requirements.txt, spaces/requirements.txt and pyproject"
    for req in reqs:
        assert any(s.operator in ("<", "<=", "~=", "==") for s in req.specifier), f"{req} has no upper bound"
        assert not req.specifier.contains(CAPPED[package], prereleases=True), f"{req} admits {CAPPED[package]}"
        assert req.specifier.contains(Version(metadata.version(package))), f"{req} excludes the installed version"
