"""What a builder is: something that detects an app kind and turns a build dir into an image."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.progress import Progress


@dataclass(frozen=True)
class BuildRequest:
    app: str
    build_dir: Path
    image: str  # the tag to produce, e.g. pushdock/hello:v3
    env: dict[str, str] = field(default_factory=dict)


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

    def detect(self, build_dir: Path) -> bool:
        """True when this builder recognises the app in build_dir."""
        ...

    def build(self, ctx: Context, req: BuildRequest, progress: Progress) -> BuildResult:
        """Build and tag req.image, streaming output line by line; raise BuildFailed on failure."""
        ...
