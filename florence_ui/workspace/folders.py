"""Which files of a server folder a workspace may take: inside the allowed root, image files, in sorted order.

"Open a folder on the server" hands a path typed in a browser to the server's
filesystem, so the rule that keeps it inside the folder the operator allowed
lives here, once: the folder is resolved (symlinks and ``..`` followed) before
it is compared with the resolved root, a symlinked file is taken only when its
target is inside the root too, and symlinked folders are not descended (no
escape, no loops). Hidden files and folders (a leading dot) are skipped, as
``florence-ui predict`` does. Pure ``pathlib`` / ``os``: no database here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from florence_ui.errors import WorkspaceError

if TYPE_CHECKING:  # the workspace imports this module; the names are for the checker only
    from florence_ui.workspace.workspace import AddReport, Workspace

#: the extensions a folder scan takes as images (compared lower-cased)
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})


@dataclass
class FolderScan:
    """A folder's image files (absolute, sorted by their path inside ``folder``) and what was left out."""

    folder: Path
    files: list[Path] = field(default_factory=list)
    #: one sentence per image-named entry left out (a link leading out of the root, a broken link, a linked folder)
    skipped: list[str] = field(default_factory=list)
    #: files without an image extension (not errors: a folder of photos holds notes and sidecars)
    not_images: int = 0


def resolve_inside(folder: str | Path, allowed_root: str | Path) -> tuple[Path, Path]:
    """The resolved folder and root, or a :class:`WorkspaceError` when the folder is not a folder inside the root.

    A relative ``folder`` is taken relative to the root (what a page's "folder
    on the server" box means).
    """
    root = Path(allowed_root).expanduser().resolve()
    if not root.is_dir():
        raise WorkspaceError(f"The allowed root {allowed_root} is not a folder on the server; the operator must "
                             "point it at an existing folder.")  # fmt: skip
    target = Path(folder).expanduser()
    resolved = (target if target.is_absolute() else root / target).resolve()
    if not resolved.is_relative_to(root):
        raise WorkspaceError(
            f"The folder {folder} is outside the folder images may be taken from ({root}), once links and '..' "
            "are followed; pick a folder inside it."
        )
    if not resolved.is_dir():
        raise WorkspaceError(
            f"The folder {folder} does not exist on the server (looked in {resolved}); check the path."
        )
    return resolved, root


def scan_folder(folder: str | Path, *, allowed_root: str | Path, recursive: bool = True) -> FolderScan:
    """Image files of ``folder`` (and its subfolders when ``recursive``), refusing anything outside ``allowed_root``."""
    resolved, root = resolve_inside(folder, allowed_root)
    scan = FolderScan(resolved)
    for dirpath, dirnames, filenames in os.walk(resolved, followlinks=False):
        here = Path(dirpath)
        for name in sorted(dirnames):
            if (here / name).is_symlink() and not name.startswith("."):
                scan.skipped.append(f"{(here / name).relative_to(resolved)}: a link to a folder, not followed.")
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        for name in filenames:
            path = here / name
            if name.startswith("."):
                continue
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                scan.not_images += 1
                continue
            rel = path.relative_to(resolved)
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(root):
                    scan.skipped.append(f"{rel}: a link to a file outside {root}, skipped.")
                    continue
                if not target.is_file():
                    scan.skipped.append(f"{rel}: a link to nothing (its target is gone), skipped.")
                    continue
            scan.files.append(path)
    scan.files.sort(key=lambda p: p.relative_to(resolved).parts)
    return scan


def add_folder(workspace: Workspace, folder: str | Path, *, allowed_root: str | Path, recursive: bool = True,
               progress: Callable[[int, int], None] | None = None) -> AddReport:  # fmt: skip
    """:meth:`Workspace.add_folder <florence_ui.workspace.Workspace.add_folder>` as a function (same rules)."""
    return workspace.add_folder(folder, allowed_root=allowed_root, recursive=recursive, progress=progress)


__all__ = ["IMAGE_EXTENSIONS", "FolderScan", "add_folder", "resolve_inside", "scan_folder"]
