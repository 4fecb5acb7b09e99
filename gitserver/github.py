"""What other plugins ask of an app's GitHub repository (the one `webhooks:set APP repo` names), with the
webhook's token: fetch a commit by ref (a pull request's head: `fetch-commit`) and post a commit status
(`commit-status`). The token is sent only to the repository's host or the configured API base URL, and is
never logged.

Commit statuses go to `API/repos/OWNER/NAME/statuses/SHA`; API is `webhooks:set APP api URL`, else
https://api.github.com for a github.com repository and https://HOST/api/v3 (GitHub Enterprise) for others.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from loguru import logger

from gitserver.webhook_store import get_setting

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dulwich.objects import ObjectID
    from dulwich.refs import Ref

    from pushdock.context import Context

STATUS_TIMEOUT = 10.0
STATES = ("pending", "success", "failure", "error")
CONTEXT = "pushdock/preview"


def api_base(ctx: Context, app: str) -> str | None:
    """The API base URL statuses of `app`'s repository go to, or None without a repository."""
    configured = get_setting(ctx, app, "api")
    if configured:
        return configured
    repo = get_setting(ctx, app, "repo")
    if not repo:
        return None
    parts = urlsplit(repo)
    if (parts.hostname or "") in ("github.com", "www.github.com"):
        return "https://api.github.com"
    return f"{parts.scheme}://{parts.netloc}/api/v3"


def owner_and_name(repo: str) -> str:
    """`OWNER/NAME` of a clone URL."""
    path = urlsplit(repo).path.strip("/").removesuffix(".git")
    return "/".join(path.split("/")[-2:])


def post_status(ctx: Context, app: str, sha: str, *, state: str, description: str, target_url: str) -> bool:
    """POST one commit status if the app has a token; True if GitHub took it. Failures are logged, never raised."""
    token, repo, base = get_setting(ctx, app, "token"), get_setting(ctx, app, "repo"), api_base(ctx, app)
    if not (token and repo and base) or state not in STATES:
        return False
    url = f"{base}/repos/{quote(owner_and_name(repo))}/statuses/{quote(sha)}"
    body = {"state": state, "description": description[:140], "context": CONTEXT}
    if target_url:
        body["target_url"] = target_url
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
        "Content-Type": "application/json", "User-Agent": "pushdock"})
    try:
        with urllib.request.urlopen(request, timeout=STATUS_TIMEOUT) as resp:
            resp.read()
        return True
    except (urllib.error.URLError, OSError, ValueError) as e:
        logger.warning("commit status not posted", app=app, sha=sha[:12], state=state, error=type(e).__name__)
        return False


def fetch_commit(ctx: Context, app: str, into: str, ref: str, sha: str) -> str | None:
    """Fetch `ref` of `app`'s repository into app `into`'s; None once `sha` is there, else why not."""
    from dulwich.client import get_transport_and_path_from_url  # noqa: PLC0415 -- start-up: dulwich loads when first used
    from dulwich.objects import ObjectID  # noqa: PLC0415 -- start-up: dulwich loads when first used
    from dulwich.refs import Ref  # noqa: PLC0415 -- start-up: dulwich loads when first used
    from dulwich.repo import Repo  # noqa: PLC0415 -- start-up: dulwich loads when first used

    source = get_setting(ctx, app, "repo")
    if not source:
        return f"no repository is set for {app} (webhooks:set {app} repo URL)"
    token = get_setting(ctx, app, "token")
    repo = Repo(str(ctx.state.repo_path(into)))
    want, wanted_ref = ObjectID(sha.encode()), Ref(ref.encode())
    try:
        if want in repo.object_store:
            return None
        client, path = get_transport_and_path_from_url(
            source, username="x-access-token" if token else None, password=token, quiet=True)

        def wants(refs: Mapping[Ref, ObjectID], depth: int | None = None) -> list[ObjectID]:
            tip = refs.get(wanted_ref)
            return [tip] if tip is not None and tip not in repo.object_store else []

        client.fetch(path, repo, determine_wants=wants)
    except Exception as e:  # the network, the remote, the credentials: all mean "cannot fetch", said once
        logger.warning("fetch failed", repo=source, ref=ref, error=repr(e))
        return f"cannot fetch {ref} from {source}: {type(e).__name__}"
    finally:
        present = want in repo.object_store
        repo.close()
    return None if present else f"commit {sha[:7]} is not {ref} at {source} (moved on?)"
