"""A destroyed app's images go with it, and only its own (real engine)."""

from __future__ import annotations

import io
import tarfile
import uuid

import docker
import pytest

from hooks import plugin

pytestmark = pytest.mark.docker


def test_destroying_an_app_leaves_another_apps_identical_image() -> None:
    """Two apps whose builds came out identical share one image id under two tags (seen under xdist: one
    module's destroy removed the id, and another module's push failed with "No such image ID")."""
    client = docker.from_env()
    empty = io.BytesIO()
    with tarfile.open(fileobj=empty, mode="w"):
        pass
    one, two = f"img-{uuid.uuid4().hex[:6]}", f"img-{uuid.uuid4().hex[:6]}"
    client.api.import_image_from_data(empty.getvalue(), repository=f"pushdock/{one}", tag="v1")
    image_id = client.images.get(f"pushdock/{one}:v1").id
    client.images.get(image_id).tag(f"pushdock/{two}", "v1")
    try:
        plugin.post_delete(None, one)  # type: ignore[arg-type]  # the hook does not read the context
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(f"pushdock/{one}:v1")
        assert client.images.get(f"pushdock/{two}:v1").id == image_id
    finally:
        for tag in (f"pushdock/{one}:v1", f"pushdock/{two}:v1"):
            try:
                client.images.remove(tag, force=True)
            except docker.errors.ImageNotFound:
                pass
