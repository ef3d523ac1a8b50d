"""florence-ui: work interactively with Florence-2 and turn its answers into reviewed labels.

The public API is small and stable::

    from florence_ui import FlorenceEngine
    engine = FlorenceEngine.from_pretrained("base")
    result = engine.run(image, "<OD>")
"""

from florence_ui.core.result import FlorenceResult
from florence_ui.core.tasks import TASKS, InputKind, OutputKind, Task, get_task
from florence_ui.model.engine import FlorenceEngine, GenerationSettings, InputError
from florence_ui.model.loading import MODEL_ALIASES, ModelLoadError

__all__ = [
    "FlorenceEngine",
    "FlorenceResult",
    "GenerationSettings",
    "InputError",
    "InputKind",
    "MODEL_ALIASES",
    "ModelLoadError",
    "OutputKind",
    "TASKS",
    "Task",
    "get_task",
]
__version__ = "0.1.0"
