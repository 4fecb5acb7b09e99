"""What a builder is: something that detects an app kind and turns a build dir into an image."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.progress import Progress


# Detection asks the registered builders in this order (order is data, never registration order); a
# builder not named here is asked after these, by name. The last shipped one, herokuish, takes every tree.
DETECTION_ORDER: tuple[str, ...] = ("dockerfile", "pack", "herokuish")
DEFAULT_DOCKERFILE = "Dockerfile"


@dataclass(frozen=True)
class BuildRequest:
    app: str
    build_dir: Path
    image: str  # the tag to produce, e.g. pushdock/hello:v3
    env: dict[str, str] = field(default_factory=dict)
    procfile: dict[str, str] = field(default_factory=dict)  # the tree's Procfile, parsed once by the pipeline


@dataclass(frozen=True)
class BuildResult:
    image: str
    # Process types the image itself declares (e.g. {"web": ""}: run the image's own CMD).
    # The pipeline merges the Procfile over these.
    processes: dict[str, str] = field(default_factory=dict)
    # Port the web process listens on when PORT is not configured (Dockerfile EXPOSE).
    web_port: int | None = None
    # Every tcp port the image EXPOSEs (Dockerfile order first): Dokku's default `http:P:P` mappings.
    exposed: tuple[int, ...] = ()


class Builder(Protocol):
    name: str

    def detect(self, build_dir: Path, env: Mapping[str, str], dockerfile: str) -> str | None:
        """Why (one line) this builder takes the tree in build_dir, or None; asked in DETECTION_ORDER.

        `env` is the app's, `dockerfile` the path of its Dockerfile (`builder-dockerfile`)."""
        ...

    def build(self, ctx: Context, req: BuildRequest, progress: Progress) -> BuildResult:
        """Build and tag req.image, streaming output line by line; raise BuildFailed on failure."""
        ...
