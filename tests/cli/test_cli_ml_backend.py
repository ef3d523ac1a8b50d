"""``florence-ui ml-backend``'s doors without a model or a server: its options, the key rule, usage errors.

Every check happens before the model loads (a typo costs no minutes of loading), so
``FlorenceEngine.from_pretrained`` and ``backend.serve`` are replaced by recorders
here: a usage error must reach neither, a good command line reaches both with
exactly the URL, key and settings the rules give. Starting the backend for real,
against a real Label Studio: tests/labelstudio/test_backend_labelstudio.py.
"""

from __future__ import annotations

import pytest

from florence_ui.cli import BASIC_AUTH_ENV, EXIT_OK, EXIT_USAGE, build_parser, main

OPERATOR_URL = "http://127.0.0.1:8080"
OPERATOR_KEY = "operator-KEY-9f8e7d6c5b4a"
OTHER_URL = "http://127.0.0.1:8181"
TYPED_KEY = "typed-KEY-0a1b2c3d4e5f"


class Loaded:
    """What ``from_pretrained`` returns here: only what the command prints."""

    def describe(self) -> str:
        return "stub model"


@pytest.fixture
def started(monkeypatch):
    """Records the model loads and the ``serve`` calls instead of doing them; the operator's environment set."""
    calls: dict[str, list] = {"load": [], "serve": []}

    def load(model, **kwargs):
        calls["load"].append((model, kwargs))
        return Loaded()

    def serve(engine, **kwargs):
        calls["serve"].append(kwargs)

    monkeypatch.setattr("florence_ui.model.engine.FlorenceEngine.from_pretrained", load)
    monkeypatch.setattr("florence_ui.labelstudio.backend.serve", serve)
    monkeypatch.setenv("LABEL_STUDIO_URL", OPERATOR_URL)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", OPERATOR_KEY)
    for name in ("SPACE_ID", "FLORENCE_UI_LS_LOCKED", "FLORENCE_UI_LS_ALLOW_PRIVATE", BASIC_AUTH_ENV):
        monkeypatch.delenv(name, raising=False)
    return calls


def test_parses_serves_model_flags_and_its_own():
    args = build_parser().parse_args(["ml-backend"])
    assert (args.host, args.port, args.url, args.api_key, args.allow_host, args.basic_auth) == (
        "127.0.0.1", 9090, None, None, [], None)  # fmt: skip
    assert args.max_waiting >= 0
    serve = build_parser().parse_args(["serve"])
    for dest in ("model", "revision", "device", "dtype", "max_new_tokens", "num_beams"):  # serve's, shared
        assert getattr(args, dest) == getattr(serve, dest)
    args = build_parser().parse_args(["ml-backend", "--model", "large-ft", "--dtype", "float32", "--num-beams", "1",
                                      "--url", OTHER_URL, "--allow-host", "images.example.com"])  # fmt: skip
    assert (args.model, args.dtype, args.num_beams, args.url, args.allow_host) == (
        "large-ft", "float32", 1, OTHER_URL, ["images.example.com"])  # fmt: skip
    with pytest.raises(SystemExit):  # serve's choices travel with the shared flag
        build_parser().parse_args(["ml-backend", "--dtype", "float8"])


def test_defaults_to_the_operators_label_studio_and_key(started):
    assert main(["ml-backend", "--port", "9191", "--model", "base-ft", "--max-new-tokens", "256"]) == EXIT_OK
    assert [m for m, _ in started["load"]] == ["base-ft"]
    (kw,) = started["serve"]
    assert (kw["host"], kw["port"], kw["ls_url"], kw["ls_api_key"], kw["basic_auth"]) == (
        "127.0.0.1", 9191, OPERATOR_URL, OPERATOR_KEY, None)  # fmt: skip
    assert kw["settings"].generation.max_new_tokens == 256


def test_the_environment_key_is_not_sent_to_another_url(started, capsys):
    assert main(["ml-backend", "--ls-url", OTHER_URL]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "needs its own API key" in err and OPERATOR_KEY not in err
    assert started == {"load": [], "serve": []}
    # with a key typed for it, that key goes there, and the operator's does not
    assert main(["ml-backend", "--ls-url", OTHER_URL, "--api-key", TYPED_KEY]) == EXIT_OK
    (kw,) = started["serve"]
    assert (kw["ls_url"], kw["ls_api_key"]) == (OTHER_URL, TYPED_KEY)
    # the operator's own URL, spelled another way, is the operator's: its key goes with it
    assert main(["ml-backend", "--ls-url", OPERATOR_URL.upper() + "/"]) == EXIT_OK
    assert started["serve"][-1]["ls_api_key"] == OPERATOR_KEY


def test_basic_auth_from_the_flag_or_the_environment(started, monkeypatch):
    assert main(["ml-backend", "--basic-auth", "labeller:s3:cret"]) == EXIT_OK
    assert started["serve"][-1]["basic_auth"] == ("labeller", "s3:cret")
    monkeypatch.setenv(BASIC_AUTH_ENV, "env-user:env-pass")
    assert main(["ml-backend"]) == EXIT_OK
    assert started["serve"][-1]["basic_auth"] == ("env-user", "env-pass")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--basic-auth", "no-colon-here"], "USER:PASSWORD"),
        (["--basic-auth", ":only-a-password"], "USER:PASSWORD"),
        (["--port", "0"], "--port"),
        (["--port", "70000"], "--port"),
        (["--max-waiting", "-1"], "--max-waiting"),
        (["--num-beams", "0"], "beam"),
        (["--ls-url", "ftp://127.0.0.1:8080"], "http"),
        (["--allow-host", "gopher://images.example.com"], "http"),
    ],
)
def test_usage_errors_are_a_sentence_before_any_model_loads(started, capsys, argv, says):
    assert main(["ml-backend", *argv]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says.lower() in err.lower() and "Traceback" not in err
    assert "only-a-password" not in err  # a password typed wrongly is not echoed
    assert started == {"load": [], "serve": []}


def test_no_key_and_an_open_port_are_warned_about(started, monkeypatch, capsys):
    monkeypatch.delenv("LABEL_STUDIO_API_KEY")
    assert main(["ml-backend", "--host", "0.0.0.0"]) == EXIT_OK
    err = capsys.readouterr().err
    assert "no Label Studio API key" in err and "without --basic-auth" in err
    assert started["serve"][-1]["ls_api_key"] == ""
