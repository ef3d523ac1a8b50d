"""One exception tree: every error florence-ui raises is a FlorenceUIError, drawn in ``florence_ui.errors``.

The drawing in the module docstring is the documentation people read, so it is
checked against the real classes: adding an exception anywhere in the package
without drawing it (or outside the tree) fails here.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re

import pytest

import florence_ui
from florence_ui import errors
from florence_ui.errors import FlorenceUIError, LabelStudioError, LabelStudioErrorKind

#: (module that raised it before the tree, class name, the builtin base code outside catches it by)
OLD_HOMES = [
    ("florence_ui.model.engine", "InputError", ValueError),
    ("florence_ui.core.images", "ImageLoadError", ValueError),
    ("florence_ui.core.geometry", "BoxError", ValueError),
    ("florence_ui.core.limits", "LimitsError", ValueError),
    ("florence_ui.model.loading", "ModelLoadError", RuntimeError),
    ("florence_ui.batch.results_file", "ResultsFileError", ValueError),
    ("florence_ui.labelstudio.errors", "LabelStudioError", RuntimeError),
    ("florence_ui.labelstudio.client", "LabelStudioError", RuntimeError),
    ("florence_ui.labelstudio.access", "AccessRefused", RuntimeError),
    ("florence_ui.labelstudio.convert", "MissingInProject", ValueError),
    ("florence_ui.labelstudio.server", "LabelStudioServerError", RuntimeError),
    ("florence_ui.cli", "UsageError", Exception),
]
#: LabelStudioError kinds as they were written before the enum (reports, JSON and tests compare with these)
OLD_KINDS = {"unreachable", "timeout", "auth", "server", "request", "not_found", "project_gone",
             "refused", "private", "locked", "needs_key"}  # fmt: skip
DRAWN = re.compile(r"^(?P<prefix>[│├└─ ]*)(?P<name>[A-Za-z]\w*)(?: \((?P<bases>[\w, ]+)\))?$")


def all_modules() -> list[str]:
    """Every module of the package (``__main__`` would run the CLI), imported so every class exists."""
    names = [info.name for info in pkgutil.walk_packages(florence_ui.__path__, "florence_ui.")]
    names = [n for n in names if not n.endswith("__main__")]
    for name in names:
        importlib.import_module(name)
    return names


def drawing() -> dict[str, tuple[str | None, set[str]]]:
    """The docstring's tree: class name → (drawn parent, drawn builtin bases)."""
    doc = errors.__doc__ or ""
    block = doc.split("::", 1)[1].strip("\n").split("\n\n")[0]
    tree: dict[str, tuple[str | None, set[str]]] = {}
    stack: list[str] = []
    for line in block.splitlines():
        match = DRAWN.match(line.strip("\n")[4:])
        assert match, f"cannot read this line of the drawing: {line!r}"
        depth = len(match["prefix"]) // 4
        stack[depth:] = [match["name"]]
        bases = {b.strip() for b in (match["bases"] or "").split(",") if b.strip()}
        tree[match["name"]] = (stack[depth - 1] if depth else None, bases)
    return tree


def public_tree() -> dict[str, tuple[str | None, set[str]]]:
    """The real classes: name → (parent in the tree, builtin bases beside it); private refinements left out."""
    found: dict[str, tuple[str | None, set[str]]] = {}
    todo = [FlorenceUIError]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__name__.startswith("_") or not cls.__module__.startswith("florence_ui"):
            continue
        parents = [b.__name__ for b in cls.__bases__ if issubclass(b, FlorenceUIError)]
        builtins = {b.__name__ for b in cls.__bases__ if not issubclass(b, FlorenceUIError)} - {"Exception"}
        assert len(parents) <= 1, f"{cls.__name__} has two parents in the tree: {parents}"
        found[cls.__name__] = (parents[0] if parents else None, builtins)
    return found


@pytest.mark.parametrize(("module", "name", "builtin"), OLD_HOMES, ids=[f"{m}.{n}" for m, n, _ in OLD_HOMES])
def test_every_error_is_one_class_of_the_tree_under_its_old_name(module, name, builtin):
    cls = getattr(importlib.import_module(module), name)
    assert cls is getattr(errors, name) is getattr(florence_ui, name)
    assert issubclass(cls, FlorenceUIError) and issubclass(cls, builtin)


def test_real_failures_are_caught_by_their_old_base_and_by_the_tree():
    from florence_ui.core.geometry import validate_box
    from florence_ui.core.images import open_image
    from florence_ui.core.limits import Limits

    with pytest.raises(ValueError, match="upload the image again") as empty:
        open_image(b"")
    with pytest.raises(ValueError, match="4 numbers") as box:
        validate_box("1234", (10, 10))
    with pytest.raises(ValueError, match="FLORENCE_UI_MAX_BOXES='many' is not a whole number") as limit:
        Limits.from_env({"FLORENCE_UI_MAX_BOXES": "many"})
    assert isinstance(empty.value, errors.ImageLoadError) and isinstance(empty.value, errors.InputError)
    assert isinstance(box.value, errors.BoxError) and isinstance(box.value, errors.InputError)
    assert isinstance(limit.value, errors.LimitsError) and not isinstance(limit.value, errors.InputError)
    assert all(isinstance(e.value, FlorenceUIError) for e in (empty, box, limit))


def test_the_drawing_in_the_docstring_is_the_tree():
    all_modules()
    assert drawing() == public_tree()


def test_every_exception_class_in_the_package_is_in_the_tree():
    outside = []
    for name in all_modules():
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == name:
                if not issubclass(value, FlorenceUIError):
                    outside.append(f"{name}.{value.__name__}")
    assert outside == [], "derive these from a florence_ui.errors class and draw them there"


def test_label_studio_kinds_are_enum_members_with_the_old_strings():
    assert OLD_KINDS <= {k.value for k in LabelStudioErrorKind}
    err = LabelStudioError("Label Studio at x refused the API key", kind="auth", status=401)
    assert err.kind is LabelStudioErrorKind.AUTH and err.kind == "auth" and err.fatal
    assert f"{err.kind}" == "auth" and json.dumps({"kind": err.kind}) == '{"kind": "auth"}'
    assert LabelStudioError("x").kind is LabelStudioErrorKind.REQUEST and not LabelStudioError("x").fatal
    fatal = {k for k in LabelStudioErrorKind if LabelStudioError("x", kind=k).fatal}
    assert fatal == {"unreachable", "timeout", "auth", "project_gone"}
    with pytest.raises(ValueError, match="bogus"):  # a kind nobody listed is a bug, not a new kind
        LabelStudioError("x", kind="bogus")


def test_real_label_studio_failures_carry_enum_kinds():
    from florence_ui.labelstudio.access import origin
    from florence_ui.labelstudio.client import LSSettings
    from florence_ui.labelstudio.server import LabelStudioServerError, ls_binary

    with pytest.raises(errors.AccessRefused) as refused:
        origin("ftp://example.com")
    with pytest.raises(LabelStudioError) as no_key:
        LSSettings(url="http://localhost:1", api_key="").client()
    with pytest.raises(LabelStudioError) as not_installed:
        ls_binary("/nonexistent-venv")
    assert refused.value.kind is LabelStudioErrorKind.REFUSED and "http:// or https://" in str(refused.value)
    assert no_key.value.kind is LabelStudioErrorKind.AUTH and "No Label Studio API key" in str(no_key.value)
    assert isinstance(not_installed.value, LabelStudioServerError)
    assert not_installed.value.kind is LabelStudioErrorKind.LOCAL_SERVER
    assert "make labelstudio" in str(not_installed.value)
