"""The git server's part of the HTTP door (web/ serves it): git over HTTP mounted at /git/, GitHub webhooks.

Given to the door through the `http-routes` trigger (gitserver/plugin.py), as data (pushdock/httproutes.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gitserver.smarthttp import PREFIX, SmartHttp
from gitserver.webhook_deploy import DeployQueue
from gitserver.webhooks import MAX_BODY as WEBHOOK_MAX_BODY
from gitserver.webhooks import GithubWebhook
from pushdock.httproutes import Mount, Route, route

if TYPE_CHECKING:
    from pushdock.context import Context


def routes(ctx: Context, queue: DeployQueue | None = None) -> list[Route | Mount]:
    """Smart HTTP at /git/APP.git and `POST /webhooks/github/APP`; webhook deploys go to `queue` (a new
    DeployQueue by default)."""
    return [Mount(PREFIX, SmartHttp(ctx)),
            route("POST", r"/webhooks/github/(?P<app>[^/]+)", GithubWebhook(queue or DeployQueue(ctx)),
                  max_body=WEBHOOK_MAX_BODY)]
