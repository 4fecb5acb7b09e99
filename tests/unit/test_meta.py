"""Meta-tests: every trigger is documented, every setting is documented, every command's help loads."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from pushdock import specs
from pushdock.bus import script_name
from pushdock.cli import dispatch
from pushdock.context import Context
from pushdock.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
HOOKS = sorted(n for n, v in vars(specs).items() if callable(v) and hasattr(v, "pushdock_spec"))


def test_hookspecs_found() -> None:
    assert "post_deploy" in HOOKS and len(HOOKS) > 10


@pytest.mark.parametrize("hook", HOOKS)
def test_every_trigger_is_documented(hook: str) -> None:
    assert f"`{script_name(hook)}`" in (ROOT / "docs" / "triggers.md").read_text()


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_documented(field: str) -> None:
    assert f"`PUSHDOCK_{field.upper()}`" in (ROOT / "docs" / "settings.md").read_text()


def all_commands(ctx: Context) -> list[list[str]]:
    out = io.StringIO()
    assert dispatch(["help"], ctx, out, io.StringIO()) == 0
    names = re.findall(r"^  ([a-z][a-z0-9-]*(?::[a-z0-9-]+)?)  ", out.getvalue(), re.M)
    return [[n] for n in names]


def test_every_command_help_loads_and_is_documented(ctx) -> None:
    commands = all_commands(ctx)
    assert len(commands) > 20
    doc = (ROOT / "docs" / "commands.md").read_text()
    for (name,) in commands:
        out, err = io.StringIO(), io.StringIO()
        assert dispatch([name, "--help"], ctx, out, err) == 0, (name, err.getvalue())
        assert "Usage:" in out.getvalue()
        assert f"`{name}" in doc, f"{name} is missing from docs/commands.md"


def test_no_shell_true_anywhere() -> None:
    offenders = []
    for path in ROOT.glob("*/**/*.py"):
        if any(part.startswith(".") for part in path.relative_to(ROOT).parts) or path.name == "test_meta.py":
            continue
        text = path.read_text()
        if "shell=True" in text or "os.system(" in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def security_claims() -> list[tuple[str, str | None]]:
    """(test file, function or None) for every test named in tests/security/README.md."""
    found = []
    for line in (ROOT / "tests" / "security" / "README.md").read_text().splitlines():
        if not line.startswith("| ") or line.startswith(("| claim", "|---")):
            continue
        test_cell = line.rstrip(" |").rsplit(" | ", 1)[-1]
        current = None
        for ref in re.findall(r"`((?:tests/[^`]+)|(?:::[^`]+))`", test_cell):
            path, _, func = ref.partition("::")
            current = path or current
            found.append((current, func or None))
    return found


def test_security_claims_name_real_tests() -> None:
    claims = security_claims()
    assert len(claims) > 20
    for path, func in claims:
        assert path and (ROOT / path).is_file(), path
        if func is not None:
            assert re.search(rf"^def {re.escape(func)}\(", (ROOT / path).read_text(), re.M), f"{path}::{func}"


PAST_EVENTS = re.compile(r"\.events\((?:[^()]|\([^()]*\))*\buntil=")  # arguments with calls one level deep


def test_no_test_asks_the_engine_for_past_events() -> None:
    """The engine answers a query of past events (`events(since=..., until=...)`) from its last 256 events, every
    container's together (moby daemon/events/events.go): on an engine busy with other tests they are gone within
    seconds. Tests subscribe before the action instead (tests/harness.py `EngineEvents`)."""
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("*.py")
                 if p.name != "test_meta.py" and re.search(PAST_EVENTS, p.read_text())]
    assert offenders == []
