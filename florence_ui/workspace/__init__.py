"""The workspace: a durable, named review of many images, in one SQLite file per workspace.

The page keeps one image's review in a browser session, which a refresh loses;
the workspace is where a whole dataset's review lives instead, so the page, the
CLI (``florence-ui workspace ...``) and the exporters read and write one store.
Pure Python (``sqlite3``) and the project's core types: no gradio, no torch.
:class:`Workspace` is the one door; :mod:`.store` holds the file, its schema and
its migrations.
"""

from florence_ui.workspace.store import SCHEMA_VERSION, data_dir, workspace_path
from florence_ui.workspace.workspace import (
    Event,
    ImageStatus,
    ImageSummary,
    ImportReport,
    LabelClass,
    Progress,
    RegionRow,
    Workspace,
)

__all__ = ["SCHEMA_VERSION", "Event", "ImageStatus", "ImageSummary", "ImportReport", "LabelClass", "Progress",
           "RegionRow", "Workspace", "data_dir", "workspace_path"]  # fmt: skip
