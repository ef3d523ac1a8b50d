"""Dependency audit for CI: known advisories vs what is installed and what the requirements allow.

Three checks, one exit code (0 = clean, 1 = findings, 2 = broken policy files):

1. every advisory in ``security/advisories.toml`` against the installed version
   of its package (``importlib.metadata`` of the running interpreter);
2. every advisory on a *direct* dependency against the minimum version that
   ``requirements.txt`` and ``pyproject.toml`` allow, so a fresh install can't
   resolve a vulnerable version either;
3. ``pip-audit`` on the environment, when its vulnerability service answers. On a
   machine that only reaches a PyPI mirror every package comes back "skipped";
   that is reported, and the committed list (1–2) is the check of record.

Findings listed in ``security/audit-allowlist.toml`` (with an unexpired date)
are reported but do not fail. Usage: ``python tools/audit_deps.py [--no-pip-audit]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
ADVISORIES = ROOT / "security" / "advisories.toml"
ALLOWLIST = ROOT / "security" / "audit-allowlist.toml"
MAX_ALLOW_DAYS = 90


class PolicyError(ValueError):
    """An advisory or allow-list entry is malformed."""


@dataclass(frozen=True)
class Finding:
    package: str
    id: str
    detail: str


def load_advisories(path: Path = ADVISORIES) -> list[dict]:
    entries = tomllib.loads(path.read_text()).get("advisory", [])
    for entry in entries:
        missing = {"package", "id", "fixed", "why"} - set(entry)
        if missing:
            raise PolicyError(f"{path.name}: advisory {entry.get('id', '?')} lacks {sorted(missing)}")
        Version(entry["fixed"])
    return entries


def load_allowlist(path: Path = ALLOWLIST, today: dt.date | None = None) -> dict[str, dict]:
    """Allow-list entries still in force, by id. Entries past ``expires`` are dropped (and so fail again)."""
    today = today or dt.date.today()
    active: dict[str, dict] = {}
    for entry in tomllib.loads(path.read_text()).get("allow", []):
        missing = {"id", "package", "reason", "expires"} - set(entry)
        if missing:
            raise PolicyError(f"{path.name}: entry {entry.get('id', '?')} lacks {sorted(missing)}")
        expires = dt.date.fromisoformat(str(entry["expires"]))
        if canonicalize_name(entry["package"]) in {"gradio", "pillow", "label-studio-sdk"}:
            raise PolicyError(f"{path.name}: {entry['package']} advisories may not be allow-listed; raise the minimum")
        if expires > today + dt.timedelta(days=MAX_ALLOW_DAYS):
            raise PolicyError(f"{path.name}: {entry['id']} expires more than {MAX_ALLOW_DAYS} days ahead")
        if expires >= today:
            active[entry["id"]] = entry
    return active


def installed_versions() -> dict[str, Version]:
    versions: dict[str, Version] = {}
    for dist in metadata.distributions():
        try:
            versions[canonicalize_name(dist.metadata["Name"])] = Version(dist.version)
        except Exception:  # noqa: BLE001 - an odd local build must not stop the audit
            continue
    return versions


def direct_requirements(root: Path = ROOT) -> list[Requirement]:
    """Requirements from requirements.txt, the Space's requirements.txt and pyproject.toml's dependencies."""
    reqs = []
    for path in (root / "requirements.txt", root / "spaces" / "requirements.txt"):
        lines = [ln.split("#")[0].strip() for ln in path.read_text().splitlines()] if path.exists() else []
        reqs += [Requirement(ln) for ln in lines if ln]
    project = tomllib.loads((root / "pyproject.toml").read_text()).get("project", {})
    reqs += [Requirement(r) for r in project.get("dependencies", [])]
    return reqs


def minimum_allowed(req: Requirement) -> Version | None:
    """The lowest version a specifier admits (from its >= / == / ~= / > bounds); None if unbounded below."""
    lows = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=", ">")]
    return max(lows) if lows else None


def check_installed(advisories: list[dict], versions: dict[str, Version]) -> list[Finding]:
    findings = []
    for adv in advisories:
        have = versions.get(canonicalize_name(adv["package"]))
        if have is not None and have < Version(adv["fixed"]):
            findings.append(
                Finding(adv["package"], adv["id"], f"installed {have} < fixed {adv['fixed']}: {adv['why']}")
            )
    return findings


def check_requirements(advisories: list[dict], reqs: list[Requirement]) -> list[Finding]:
    findings = []
    for req in reqs:
        name = canonicalize_name(req.name)
        for adv in advisories:
            if canonicalize_name(adv["package"]) != name:
                continue
            low = minimum_allowed(req)
            if low is None or low < Version(adv["fixed"]):
                findings.append(
                    Finding(req.name, adv["id"], f"requirement '{req}' admits versions below {adv['fixed']}")
                )
    return findings


def run_pip_audit(timeout: int = 600) -> tuple[list[Finding], str]:
    """pip-audit on this environment: (findings, a one-line summary)."""
    try:
        proc = subprocess.run([sys.executable, "-m", "pip_audit", "--local", "-f", "json", "--progress-spinner", "off"],
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"pip-audit did not run ({type(exc).__name__}); the advisory list is the check of record"
    if not proc.stdout.strip():
        return [], (f"pip-audit did not run (exit {proc.returncode}: {proc.stderr.strip()[-300:] or 'no output'}); "
                    "the advisory list is the check of record")  # fmt: skip
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return [], f"pip-audit gave no JSON (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"
    deps = report.get("dependencies", [])
    skipped = sum(1 for d in deps if d.get("skip_reason"))
    findings = [
        Finding(d["name"], v["id"], f"{d['name']} {d.get('version')}: fixed in {', '.join(v.get('fix_versions', []))}")
        for d in deps
        for v in d.get("vulns", [])
    ]
    if deps and skipped == len(deps):
        summary = (f"pip-audit could not look up any of {len(deps)} packages (its vulnerability service is "
                   "unreachable from here); the committed advisory list is the check of record")  # fmt: skip
    else:
        summary = f"pip-audit checked {len(deps) - skipped} of {len(deps)} packages: {len(findings)} finding(s)"
    return findings, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-pip-audit", action="store_true", help="only the committed advisory list")
    args = parser.parse_args(argv)
    try:
        advisories, allowed = load_advisories(), load_allowlist()
    except (PolicyError, ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"audit policy error: {exc}", file=sys.stderr)
        return 2
    findings = check_installed(advisories, installed_versions()) + check_requirements(advisories, direct_requirements())
    findings = list(dict.fromkeys(findings))  # requirements.txt and pyproject.toml say the same thing
    print(f"advisory list: {len(advisories)} advisories checked against installed versions and requirement minimums")
    if not args.no_pip_audit:
        extra, summary = run_pip_audit()
        findings += extra
        print(summary)
    failing = 0
    for f in findings:
        entry = allowed.get(f.id)
        if entry and canonicalize_name(entry["package"]) == canonicalize_name(f.package):
            print(f"  allowed until {entry['expires']}: {f.package} {f.id}: {f.detail} ({entry['reason']})")
        else:
            failing += 1
            print(f"  VULNERABLE: {f.package} {f.id}: {f.detail}")
    print("dependency audit: " + ("clean" if not failing else f"{failing} finding(s) not allow-listed"))
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Finding", "PolicyError", "check_installed", "check_requirements", "load_advisories", "load_allowlist",
           "minimum_allowed"]  # fmt: skip
