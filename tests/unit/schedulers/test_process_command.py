"""How a Procfile or task command line becomes a container's command: `exec` for one simple command (the
app is then the container's main process and gets SIGTERM itself), the shell kept for anything more, and
words for an image's own ENTRYPOINT."""

from __future__ import annotations

import subprocess

import pytest

from pushdock.errors import PushdockError
from schedulers.process_command import command_argv, exec_line, image_entrypoint


@pytest.mark.parametrize(("line", "expected"), [
    ("node worker.js", "exec node worker.js"),
    ("gunicorn app:app --bind 0.0.0.0:$PORT", "exec gunicorn app:app --bind 0.0.0.0:$PORT"),
    ("bundle exec puma -C config/puma.rb", "exec bundle exec puma -C config/puma.rb"),
    ("python3 a.py >>log 2>&1", "exec python3 a.py >>log 2>&1"),
    ('RAILS_ENV="pro duction" X=1 rails s', 'RAILS_ENV="pro duction" X=1 exec rails s'),
    ("node $(cat entry)", "node $(cat entry)"),  # a subshell: kept as written
    ("a && b", "a && b"),
    ("a; b", "a; b"),
    ("a | b", "a | b"),
    ("a 2>&1|b", "a 2>&1|b"),
    ("a &", "a &"),
    ("if true; then a; fi", "if true; then a; fi"),
    ("cd web && node x", "cd web && node x"),
    ("cd web", "cd web"),  # a builtin: no program to exec
    ("X=1", "X=1"),
    ("echo 'open", "echo 'open"),  # the shell reports the quote
    ("a\nb", "a\nb"),
])
def test_exec_line(line: str, expected: str) -> None:
    assert exec_line(line) == expected


@pytest.mark.parametrize("line", ['X="a b" exec_me', "echo $((1+2)) done >/dev/null", "printf '%s\\n' 'a;b'"])
def test_exec_line_runs_like_the_line_in_a_real_shell(line: str, tmp_path) -> None:
    script = tmp_path / "exec_me"
    script.write_text('#!/bin/sh\necho "X=$X"\n')
    script.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    plain = subprocess.run(["/bin/sh", "-c", line], capture_output=True, text=True, env=env)
    execd = subprocess.run(["/bin/sh", "-c", exec_line(line)], capture_output=True, text=True, env=env)
    assert (execd.returncode, execd.stdout) == (plain.returncode, plain.stdout)


def test_entrypoint_images_get_words_others_a_shell_line() -> None:
    assert command_argv("node w.js") == ["/bin/sh", "-c", "exec node w.js"]
    assert command_argv("echo 'hello world' $PORT", ("/entry.sh",)) == ["echo", "hello world", "$PORT"]
    with pytest.raises(PushdockError, match="cannot split the command"):
        command_argv("echo 'open", ("/entry.sh",))


def test_builder_entrypoints_are_the_platforms_not_the_apps() -> None:
    assert image_entrypoint({"Entrypoint": ["/entry.sh"], "Labels": {"pushdock.builder": "dockerfile"}}) == (
        "/entry.sh",)
    assert image_entrypoint({"Entrypoint": ["/start"], "Labels": {"pushdock.builder": "herokuish"}}) == ()
    assert image_entrypoint({"Entrypoint": ["/cnb/lifecycle/launcher"], "Labels": {"pushdock.builder": "pack"}}) == ()
    assert image_entrypoint({"Entrypoint": None, "Cmd": ["python3"]}) == ()
