"""The dependency audit's policy: advisories vs versions and requirement minimums, and the allow-list rules."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import audit_deps  # noqa: E402

ADV = [{"package": "Pillow", "id": "CVE-X", "fixed": "11.3.0", "why": "heap overflow"}]


def test_the_repository_is_clean_under_its_own_policy():
    advisories = audit_deps.load_advisories()
    assert {a["package"] for a in advisories} >= {"gradio", "pillow", "label-studio-sdk"}
    assert audit_deps.check_requirements(advisories, audit_deps.direct_requirements()) == []
    assert audit_deps.check_installed(advisories, audit_deps.installed_versions()) == []
    assert audit_deps.main(["--no-pip-audit"]) == 0


def test_an_installed_version_below_the_fix_is_found():
    found = audit_deps.check_installed(ADV, {"pillow": Version("11.2.9")})
    assert [f.id for f in found] == ["CVE-X"] and "11.2.9 < fixed 11.3.0" in found[0].detail
    assert audit_deps.check_installed(ADV, {"pillow": Version("11.3.0")}) == []


@pytest.mark.parametrize(("spec", "bad"), [("pillow>=10", True), ("pillow", True), ("pillow>=11.3", False),
                                           ("Pillow~=12.0", False), ("pillow<13", True)])  # fmt: skip
def test_requirement_minimums_must_exclude_vulnerable_versions(spec, bad):
    assert bool(audit_deps.check_requirements(ADV, [Requirement(spec)])) is bad


def _allow(tmp_path, package="ray", expires=None):
    expires = expires or (dt.date.today() + dt.timedelta(days=30)).isoformat()
    path = tmp_path / "allow.toml"
    path.write_text(
        f'[[allow]]\nid = "CVE-Y"\npackage = "{package}"\nreason = "not reachable"\nexpires = "{expires}"\n'
    )
    return path


def test_allow_list_entries_expire_and_some_packages_cannot_be_allowed(tmp_path):
    assert "CVE-Y" in audit_deps.load_allowlist(_allow(tmp_path))
    yesterday = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    assert audit_deps.load_allowlist(_allow(tmp_path, expires=yesterday)) == {}
    with pytest.raises(audit_deps.PolicyError, match="may not be allow-listed"):
        audit_deps.load_allowlist(_allow(tmp_path, package="gradio"))
    far = (dt.date.today() + dt.timedelta(days=400)).isoformat()
    with pytest.raises(audit_deps.PolicyError, match="90 days"):
        audit_deps.load_allowlist(_allow(tmp_path, expires=far))
