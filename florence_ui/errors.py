"""Every exception florence-ui raises on purpose, in one tree, so callers can catch by meaning.

The app's failures used to be a dozen unrelated classes spread over the
modules that raise them, and two places told them apart by reading their
messages. Here they are together, each under :class:`FlorenceUIError`, each
keeping the builtin base (``ValueError``, ``RuntimeError``) that code written
before the tree catches. ``str(err)`` is always the whole user-facing sentence
(cause, fix, and the variable or option to change); the UI, the CLI and the API
show it as it is, so no caller rewrites or parses a message: a caller that
needs to tell failures apart uses the class, or a :class:`LabelStudioError`'s
``kind``. This module imports nothing from florence-ui (every layer may use it);
the modules that raise each error re-export it under its old name.

The tree (``tests/core/test_errors.py`` checks this drawing against the classes)::

    FlorenceUIError
    ├── InputError (ValueError)
    │   ├── ImageLoadError
    │   └── BoxError
    ├── LimitsError (ValueError)
    ├── ModelLoadError (RuntimeError)
    │   └── SamLoadError
    ├── ResultsFileError (ValueError)
    ├── LabelStudioError (RuntimeError)
    │   ├── AccessRefused
    │   ├── ImageRefused
    │   ├── MissingInProject (ValueError)
    │   └── LabelStudioServerError
    ├── WorkspaceError (RuntimeError)
    │   └── ConflictError
    └── UsageError

Who raises each, and what the person sees:

- ``InputError``: a request that cannot run as given (no text, no box, bad
  settings, a parse of something that is not an answer); raised by
  :class:`~florence_ui.model.engine.FlorenceEngine`, ``GenerationSettings.checked``
  and tiling. The page shows it as a warning, the API returns it, ``predict``
  prints ``error: ...`` and exits 2; in a batch it fails its one job.
- ``ImageLoadError``: a file or upload that is not a usable image (missing,
  empty, not an image, damaged, too many pixels); raised by
  :func:`~florence_ui.core.images.open_image` and the batch runner's
  ``load_image``. The page shows it as a warning; a batch lists the image as
  FAILED with the sentence and goes on.
- ``BoxError``: a prompt box that is not 4 finite numbers or lies outside the
  image; raised by :func:`~florence_ui.core.geometry.validate_box`. The engine
  reports it as an ``InputError`` naming the box ("Box 2: ...").
- ``LimitsError``: a ``FLORENCE_UI_*`` limit variable that is not a usable
  value; raised by :mod:`florence_ui.core.limits`. ``serve`` refuses to start
  (exit 2) with the variable and the value.
- ``ModelLoadError``: the checkpoint cannot be found, downloaded or loaded
  (offline, wrong id, gated, full disk, bad device or dtype); raised by
  :mod:`florence_ui.model.loading` and ``download``. The message names the
  model, the cause and a ``Fix:``; the CLI exits 2, ``serve`` exits 1.
- ``SamLoadError``: the optional SAM segmenter (``--sam``, ``sam=``) cannot be
  found, downloaded or loaded, or needs what is not installed (SAM 2 without
  torchvision); raised by :mod:`florence_ui.model.sam`, at load or at the first
  refine / click when loaded lazily. A ``ModelLoadError`` (the CLI exits 2), but
  the page and the API go on without refinement and say why.
- ``ResultsFileError``: a results.jsonl that cannot be used (missing, or being
  written by another run); raised by :mod:`florence_ui.batch.results_file`. The
  CLI prints ``error: ...`` and exits 2.
- ``LabelStudioError``: a Label Studio action failed; ``kind`` (a
  :class:`LabelStudioErrorKind`) says how, ``status`` holds the HTTP status when
  there was one, and the message never holds the API key. Raised by
  :mod:`florence_ui.labelstudio.client` (through ``labelstudio.errors.calls``,
  which maps every SDK / network failure). The Label Studio tab shows it as a
  warning; ``push`` prints ``error: ...`` and exits 2; a fatal kind stops a
  push, the others fail one image.
- ``AccessRefused``: the URL / key pair is not allowed (not http(s), a private
  address on a public app, the URL locked, a key bound to another server);
  nothing was sent. Raised by :mod:`florence_ui.labelstudio.access`; shown like
  any ``LabelStudioError``.
- ``ImageRefused``: a task's image URL the ML backend will not read (another
  host or scheme than the configured Label Studio and its allowed hosts);
  nothing was requested. Raised by :mod:`florence_ui.labelstudio.backend_images`;
  the task gets no prediction and the refusal is logged.
- ``MissingInProject``: the project's labeling config cannot hold some of our
  regions; ``check`` holds what is missing and the person chooses (add, map or
  leave out). Raised by ``labelstudio.convert.to_prediction`` before anything is
  written; the tab shows the check, ``push`` says which ``--missing`` to use.
- ``LabelStudioServerError``: the local Label Studio could not be found,
  started or reached; raised by :mod:`florence_ui.labelstudio.server`. The app
  starts without it and says why; ``python -m florence_ui.labelstudio.server`` exits 1.
- ``WorkspaceError``: a workspace that cannot be opened or used as asked (a bad
  name, a damaged or newer-than-known file, a region or label that is not
  there); raised by :mod:`florence_ui.workspace`. The CLI prints
  ``error: ...`` and exits 2; the page will show it as a warning.
- ``ConflictError``: a review edit made against a region someone else changed
  first (another browser, the CLI); nothing was written, and the message names
  what changed. ``region_id``, ``expected`` and ``actual`` (versions) say which.
  Raised by :class:`~florence_ui.workspace.Workspace`'s review actions.
- ``UsageError``: bad command-line arguments or inputs; raised by
  :mod:`florence_ui.cli`, printed as ``error: ...`` with exit code 2.

Private refinements (``ui.controller._Partial``, an ``InputError`` that also
says what was applied) stay in their module and are not drawn.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol


class FlorenceUIError(Exception):
    """The root: anything florence-ui raises on purpose; ``str(err)`` is the message to show."""


class InputError(FlorenceUIError, ValueError):
    """The request cannot be run as given (missing text, no boxes, bad image)."""


class ImageLoadError(InputError):
    """The input is not an image we can use; ``str(err)`` is the user-facing message."""


class BoxError(InputError):
    """A prompt box that cannot be used (not 4 numbers, or outside the image)."""


class LimitsError(FlorenceUIError, ValueError):
    """A ``FLORENCE_UI_*`` limit variable holds something that is not a usable value."""


class ModelLoadError(FlorenceUIError, RuntimeError):
    """The model could not be loaded; ``str(err)`` is the whole user-facing message."""


class SamLoadError(ModelLoadError):
    """The SAM segmenter could not be loaded; Florence-2 still works, only refinement and clicks do not."""


class ResultsFileError(FlorenceUIError, ValueError):
    """A results file or line that cannot be used; the message names the file and line."""


class LabelStudioErrorKind(StrEnum):
    """How a Label Studio action failed. A ``StrEnum``: ``kind == "auth"`` holds, JSON and f-strings get the value."""

    #: Label Studio rejected the request, or answered something that is not Label Studio's API
    REQUEST = "request"
    #: no connection (refused, DNS, network): the server is away or the URL is wrong
    UNREACHABLE = "unreachable"
    #: no answer within the timeout
    TIMEOUT = "timeout"
    #: no API key, or the key was refused (401 / 403)
    AUTH = "auth"
    #: Label Studio failed with a 5xx
    SERVER = "server"
    #: the thing asked for is not there (404)
    NOT_FOUND = "not_found"
    #: the project was deleted: retrying against it cannot work
    PROJECT_GONE = "project_gone"
    #: the URL is not a plain http(s)://host[:port] (AccessRefused)
    REFUSED = "refused"
    #: the URL resolves to a private address and the app is public (AccessRefused)
    PRIVATE = "private"
    #: the app is locked to its configured Label Studio (AccessRefused)
    LOCKED = "locked"
    #: this server needs its own API key: the configured one stays with its server (AccessRefused)
    NEEDS_KEY = "needs_key"
    #: the project's labeling config cannot hold some regions (MissingInProject)
    MISSING_IN_PROJECT = "missing_in_project"
    #: the local Label Studio could not be found, started or reached (LabelStudioServerError)
    LOCAL_SERVER = "local_server"


#: kinds after which trying the next image is pointless: the server is away, refuses us, or the project is gone
FATAL_KINDS = frozenset(
    {
        LabelStudioErrorKind.UNREACHABLE,
        LabelStudioErrorKind.TIMEOUT,
        LabelStudioErrorKind.AUTH,
        LabelStudioErrorKind.PROJECT_GONE,
    }
)


class LabelStudioError(FlorenceUIError, RuntimeError):
    """A Label Studio call failed; the message is safe to show (no API key, no headers)."""

    def __init__(
        self, message: str, kind: LabelStudioErrorKind = LabelStudioErrorKind.REQUEST, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.kind = LabelStudioErrorKind(kind)
        self.status = status

    @property
    def fatal(self) -> bool:
        """No point trying the next image: the server is away, refuses us, or the project is gone."""
        return self.kind in FATAL_KINDS


class AccessRefused(LabelStudioError):
    """The URL / key combination is not allowed; nothing was sent. The message says why and what to change."""

    def __init__(self, message: str, kind: LabelStudioErrorKind = LabelStudioErrorKind.REFUSED) -> None:
        super().__init__(message, kind=kind)


class LabelCheckLike(Protocol):
    """What :class:`MissingInProject` needs of ``labelstudio.convert.LabelCheck`` (this module imports no layer)."""

    def describe(self) -> str: ...


class MissingInProject(LabelStudioError, ValueError):
    """The project cannot hold some regions as they are: the user must choose (add, map or leave out).

    ``check`` is the :class:`~florence_ui.labelstudio.convert.LabelCheck` that found what is missing.
    """

    def __init__(self, check: LabelCheckLike) -> None:
        super().__init__(check.describe(), kind=LabelStudioErrorKind.MISSING_IN_PROJECT)
        self.check = check


class LabelStudioServerError(LabelStudioError):
    """The local Label Studio could not be found, started or reached."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind=LabelStudioErrorKind.LOCAL_SERVER)


class WorkspaceError(FlorenceUIError, RuntimeError):
    """A workspace cannot be opened or used as asked; the message says why and what to do."""


class ConflictError(WorkspaceError):
    """An edit of a region that changed since the caller read it; nothing was written (optimistic concurrency)."""

    def __init__(self, message: str, region_id: int, expected: int | None, actual: int | None) -> None:
        super().__init__(message)
        self.region_id, self.expected, self.actual = region_id, expected, actual


class UsageError(FlorenceUIError):
    """Bad arguments or inputs: printed as ``error: ...`` with exit code 2."""


__all__ = [
    "FATAL_KINDS",
    "AccessRefused",
    "BoxError",
    "ConflictError",
    "FlorenceUIError",
    "ImageLoadError",
    "InputError",
    "LabelCheckLike",
    "LabelStudioError",
    "LabelStudioErrorKind",
    "LabelStudioServerError",
    "LimitsError",
    "MissingInProject",
    "ModelLoadError",
    "ResultsFileError",
    "SamLoadError",
    "UsageError",
    "WorkspaceError",
]
