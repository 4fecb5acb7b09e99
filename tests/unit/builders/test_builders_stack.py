"""The stack image's file-system steps on a fake root: CA bundle in (never through a link), apt leftovers out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builders.stack import _customise, _import_result, _mounts_below, _remove_tree
from pushdock.errors import BuildFailed


def fake_rootfs(root: Path) -> Path:
    for rel in ("etc/ssl/certs", "var/cache/apt/archives/partial", "var/lib/apt/lists/partial"):
        (root / rel).mkdir(parents=True)
    (root / "var/cache/apt/pkgcache.bin").write_text("x")
    (root / "var/cache/apt/archives/python3_3.11_amd64.deb").write_text("x")
    (root / "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages").write_text("x")
    (root / "var/lib/apt/lists/lock").write_text("")
    return root


def test_customise_copies_the_bundle_and_drops_apt_leftovers(tmp_path: Path) -> None:
    bundle = tmp_path / "host.crt"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nhost\n")
    root = fake_rootfs(tmp_path / "rootfs")
    _customise(root, bundle)
    assert (root / "etc/ssl/certs/ca-certificates.crt").read_text() == bundle.read_text()
    assert not list((root / "var/cache/apt").glob("*.bin"))
    assert not list((root / "var/cache/apt/archives").glob("*.deb"))
    assert sorted(p.name for p in (root / "var/lib/apt/lists").iterdir()) == ["partial"]


def test_customise_never_writes_through_a_link_in_the_rootfs(tmp_path: Path) -> None:
    outside = tmp_path / "outside.crt"
    outside.write_text("must stay")
    bundle = tmp_path / "host.crt"
    bundle.write_text("host bundle")
    root = fake_rootfs(tmp_path / "rootfs")
    os.symlink(outside, root / "etc/ssl/certs/ca-certificates.crt")
    _customise(root, bundle)
    assert outside.read_text() == "must stay"
    target = root / "etc/ssl/certs/ca-certificates.crt"
    assert not target.is_symlink() and target.read_text() == "host bundle"


def test_customise_without_a_host_bundle(tmp_path: Path) -> None:
    root = fake_rootfs(tmp_path / "rootfs")
    _customise(root, tmp_path / "missing.crt")
    assert not (root / "etc/ssl/certs/ca-certificates.crt").exists()


def test_mounts_below() -> None:
    assert "/" in _mounts_below(Path("/"))
    assert _mounts_below(Path("/proc")) and all(m.startswith("/proc") for m in _mounts_below(Path("/proc")))


def test_remove_tree(tmp_path: Path) -> None:
    (tmp_path / "work/rootfs/etc").mkdir(parents=True)
    _remove_tree(tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_import_result() -> None:
    assert _import_result('{"status":"sha256:abc"}\r\n') == "sha256:abc"
    with pytest.raises(BuildFailed, match=r"^docker import failed: bad tar$"):
        _import_result('{"errorDetail":{"message":"bad tar"},"error":"bad tar"}\n')
