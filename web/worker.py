"""One API command per process, as the SSH door runs one per exec request: the same registry, roles and audit.

Run as `python -m web.worker` with the caller in PUSHDOCK_IDENTITY (JSON: name, role, apps; door `http`) and the
command in PUSHDOCK_ARGV (a JSON list). Writes one JSON document on stdout: exit status, the status code the door
answers with, the command's stdout and its `error:` line; with PUSHDOCK_STREAM set (a follower such as
`logs -t`), the command's output as it comes instead. Logs go to the log file only.
"""

from __future__ import annotations

import io
import json
import os
import sys

from pushdock.errors import PushdockError
from pushdock.httproutes import status_of

USAGE_STATUS = 2  # click's and UsageError's exit status


def http_status(rc: int, errors: list[PushdockError]) -> int:
    if rc == 0:
        return 200
    if errors:
        return status_of(errors[0])
    return 400 if rc == USAGE_STATUS else 500


def main() -> int:
    from pushdock import log  # noqa: PLC0415 -- start-up: loads only when this path runs
    from pushdock.cli import dispatch  # noqa: PLC0415 -- start-up: loads only when this path runs
    from pushdock.context import Context, load_settings  # noqa: PLC0415 -- start-up: loads only when this path runs
    from pushdock.state import Identity  # noqa: PLC0415 -- start-up: loads only when this path runs

    data = json.loads(os.environ["PUSHDOCK_IDENTITY"])
    argv = [str(a) for a in json.loads(os.environ["PUSHDOCK_ARGV"])]
    settings = load_settings()
    ctx = Context(settings=settings, identity=Identity(name=str(data["name"]), role=str(data["role"]),
                                                       apps=tuple(data.get("apps", ())), door="http"))
    log.configure(settings.log_level, logfile=ctx.state.path("logs", "pushdock.log"), stderr=False,
                  extra={"who": ctx.identity.name, "door": "http"})
    if os.environ.get("PUSHDOCK_STREAM"):  # a follower (`logs -t`): its output as it comes, errors included
        return dispatch(argv, ctx, sys.stdout, sys.stdout)
    out, err = io.StringIO(), io.StringIO()
    errors: list[PushdockError] = []
    rc = dispatch(argv, ctx, out, err, errors)
    sys.stdout.write(json.dumps({"rc": rc, "status": http_status(rc, errors), "out": out.getvalue(),
                                 "error": err.getvalue().strip()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
