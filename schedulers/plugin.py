"""The built-in schedulers, registered through pushdock's own hooks.

Cheap to import: the docker SDK is imported inside the scheduler's methods, when first used.
"""

from __future__ import annotations

from typing import Any

from hooks.specs import hookimpl


@hookimpl
def register_schedulers() -> dict[str, Any]:
    from schedulers.docker_local import DockerLocalScheduler

    return {DockerLocalScheduler.name: DockerLocalScheduler()}
