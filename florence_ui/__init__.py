"""florence-ui: work interactively with Florence-2 and turn its answers into reviewed labels.

The public API is small and stable::

    from florence_ui import FlorenceEngine
    engine = FlorenceEngine.from_pretrained("base")
    result = engine.run(image, "<OD>")
"""

from .engine import FlorenceEngine, GenerationSettings, InputError
from .loading import MODEL_ALIASES, ModelLoadError
from .result import FlorenceResult
from .tasks import TASKS, InputKind, OutputKind, Task, get_task

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
