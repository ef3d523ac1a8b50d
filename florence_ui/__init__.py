"""florence-ui: work interactively with Florence-2 and turn its answers into reviewed labels.

The public API is small and stable::

    from florence_ui import FlorenceEngine
    engine = FlorenceEngine.from_pretrained("base")
    result = engine.run(image, "<OD>")

Every error it raises on purpose is a :class:`FlorenceUIError` (the tree is
drawn in :mod:`florence_ui.errors`); ``str(err)`` is the message to show.
"""

from florence_ui.core.result import FlorenceResult
from florence_ui.core.tasks import TASKS, InputKind, OutputKind, Task, get_task
from florence_ui.errors import (
    AccessRefused,
    BoxError,
    ConflictError,
    FlorenceUIError,
    ImageLoadError,
    InputError,
    LabelStudioError,
    LabelStudioErrorKind,
    LabelStudioServerError,
    LimitsError,
    MissingInProject,
    ModelLoadError,
    ResultsFileError,
    UsageError,
    WorkspaceError,
)
from florence_ui.model.engine import FlorenceEngine, GenerationSettings
from florence_ui.model.loading import MODEL_ALIASES

__all__ = [
    "AccessRefused",
    "BoxError",
    "ConflictError",
    "FlorenceEngine",
    "FlorenceResult",
    "FlorenceUIError",
    "GenerationSettings",
    "ImageLoadError",
    "InputError",
    "InputKind",
    "LabelStudioError",
    "LabelStudioErrorKind",
    "LabelStudioServerError",
    "LimitsError",
    "MODEL_ALIASES",
    "MissingInProject",
    "ModelLoadError",
    "OutputKind",
    "ResultsFileError",
    "TASKS",
    "Task",
    "UsageError",
    "WorkspaceError",
    "get_task",
]
__version__ = "0.1.0"
