"""Claim: the SSH door only runs commands for registered keys. No shell, no forwarding, no env passing,
no password auth; weak keys cannot be registered. Real OpenSSH client against the embedded server."""

from __future__ import annotations

import subprocess

import pytest

from tests.harness import Server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("hardening")).start()
    srv.add_key()
    yield srv
    srv.stop()


def ssh(server: Server, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*server.ssh_argv(server.key), *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=server.git_env)


def test_no_shell(server) -> None:
    res = ssh(server, "pushdock@127.0.0.1")
    assert res.returncode != 0
    res = ssh(server, "-tt", "pushdock@127.0.0.1", "sh", "-c", "id")
    assert res.returncode != 0 and "uid=" not in res.stdout


def test_no_password_auth(server) -> None:
    res = subprocess.run(["ssh", "-p", str(server.ssh_port), "-o", "StrictHostKeyChecking=no",
                          "-o", "UserKnownHostsFile=/dev/null", "-o", "PubkeyAuthentication=no",
                          "-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "BatchMode=yes",
                          "pushdock@127.0.0.1", "apps:list"], capture_output=True, text=True, timeout=20)
    assert res.returncode == 255 and "Permission denied" in res.stderr


def test_no_port_forwarding(server) -> None:
    res = ssh(server, "-o", "ExitOnForwardFailure=yes", "-N", "-L", "0:127.0.0.1:22", "pushdock@127.0.0.1",
              timeout=20)
    assert res.returncode != 0
    res = ssh(server, "-o", "ExitOnForwardFailure=yes", "-N", "-R", "0:127.0.0.1:22", "pushdock@127.0.0.1",
              timeout=20)
    assert res.returncode != 0


def test_env_is_not_passed(server) -> None:
    res = ssh(server, "-o", "SetEnv=PUSHDOCK_DATA_DIR=/tmp/evil", "pushdock@127.0.0.1", "apps:list")
    assert res.returncode == 0
    res = ssh(server, "-o", "SetEnv=PUSHDOCK_IDENTITY={}", "pushdock@127.0.0.1", "ssh-keys:list")
    assert res.returncode == 0 and "tester" in res.stdout  # still the key's own identity and data dir


@pytest.mark.parametrize(("kind", "bits"), [("rsa", "1024"), ("dsa", "1024")])
def test_weak_keys_refused(server, tmp_path, kind, bits) -> None:
    key = tmp_path / kind
    made = subprocess.run(["ssh-keygen", "-q", "-t", kind, "-b", bits, "-N", "", "-f", str(key)],
                          capture_output=True, text=True)
    if made.returncode != 0:  # OpenSSH may refuse to even make such a key; the claim holds trivially
        assert kind == "dsa" or "invalid" in made.stderr.lower(), made.stderr
        pub = "ssh-dss AAAAB3NzaC1kc3MAAACBAP8= weak" if kind == "dsa" else ""
    else:
        pub = key.with_suffix(".pub").read_text()
    res = server.cli("ssh-keys:add", f"weak-{kind}", input=pub, check=False)
    assert res.returncode != 0 and res.stderr.startswith("error: "), res.stderr
    assert f"weak-{kind}" not in server.cli("ssh-keys:list").stdout
