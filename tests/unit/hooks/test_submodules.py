"""Submodule URLs from a pushed .gitmodules: which are fetched, how they are shown, what the file cannot do."""

from __future__ import annotations

import pytest

from hooks.submodules import Submodule, check_url, parse_gitmodules, shown_url
from pushdock.errors import BuildFailed


@pytest.mark.parametrize(("url", "why"), [
    ("https://example.com/org/lib.git", None),
    ("http://127.0.0.1:8080/lib.git", None),
    ("git://example.com/lib.git", None),
    ("../lib.git", "a relative URL"),
    ("./lib", "a relative URL"),
    ("git@github.com:org/lib.git", "an ssh URL"),
    ("ssh://git@example.com/lib.git", "an ssh URL"),
    ("file:///var/lib/pushdock/repos/other.git", "local paths and file://"),
    ("/var/lib/pushdock/repos/other.git", "local paths and file://"),
    ("ext::sh -c touch% /tmp/pwned", "local paths and file://"),
    ("https://h/r.git\n[core]", "control characters"),
])
def test_only_network_urls_are_fetched(url: str, why: str | None) -> None:
    sub = Submodule("vendor/lib", url, "0" * 40)
    if why is None:
        check_url(sub)
        return
    with pytest.raises(BuildFailed, match=why) as info:
        check_url(sub)
    assert str(info.value).startswith("submodule vendor/lib (") and "\n" not in str(info.value)


def test_credentials_in_a_url_are_never_shown() -> None:
    assert shown_url("https://x-access-token:ghp_abc@github.com/o/r.git") == "https://github.com/o/r.git"
    assert shown_url("http://tok@127.0.0.1:81/r.git") == "http://127.0.0.1:81/r.git"
    assert "ghp_abc" not in Submodule("a", "https://u:ghp_abc@h/r", "0" * 40).shown


def test_gitmodules_cannot_include_files_of_the_host(tmp_path) -> None:
    secret = tmp_path / "config"
    secret.write_text('[submodule "x"]\n\tpath = x\n\turl = https://leak/\n')
    text = f'[include]\n\tpath = {secret}\n[submodule "lib"]\n\tpath = vendor/lib\n\turl = https://h/lib.git\n'
    assert parse_gitmodules(text.encode()) == {"vendor/lib": "https://h/lib.git"}
