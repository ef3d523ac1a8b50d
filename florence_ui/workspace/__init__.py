"""The workspace: a durable, named review of many images, in one SQLite file per workspace.

The page keeps one image's review in a browser session, which a refresh loses;
the workspace is where a whole dataset's review lives instead, so the page, the
CLI (``florence-ui workspace ...``) and the exporters read and write one store.
Pure Python (``sqlite3``) and the project's core types: no gradio, no torch.
:class:`Workspace` is the one door; :mod:`.store` holds the file, its schema and
its migrations.
"""

from florence_ui.workspace.folders import IMAGE_EXTENSIONS, FolderScan, scan_folder
from florence_ui.workspace.store import DATA_ENV, SCHEMA_VERSION, data_dir, workspace_names, workspace_path
from florence_ui.workspace.workspace import (
    AddReport,
    DuplicateGroup,
    Event,
    ImageStatus,
    ImageSummary,
    ImportReport,
    LabelClass,
    Progress,
    RegionRow,
    Workspace,
)

__all__ = ["DATA_ENV", "IMAGE_EXTENSIONS", "SCHEMA_VERSION", "AddReport", "DuplicateGroup", "Event", "FolderScan", "ImageStatus",
           "ImageSummary", "ImportReport", "LabelClass", "Progress", "RegionRow", "Workspace", "data_dir",
           "scan_folder", "workspace_names", "workspace_path"]  # fmt: skip
