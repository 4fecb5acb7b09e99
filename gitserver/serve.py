"""`pushdock serve`: the proxy, a reconcile pass, then the HTTP and SSH doors until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from loguru import logger

from pushdock.progress import Progress

if TYPE_CHECKING:
    from gitserver.http import HttpDoor
    from pushdock.context import Context


def serve(ctx: Context, on_ready: Callable[[str], None]) -> None:
    """Run in the foreground; `on_ready` gets one line once every door listens. The proxy keeps running after."""
    from gitserver.http import HttpDoor
    from hooks import pipeline
    from pushdock import log

    log.configure(ctx.settings.log_level, logfile=ctx.state.path("logs", "pushdock.log"), stderr=True)
    proxy = ctx.proxy()
    proxy.ensure_running(ctx)
    progress = Progress(lambda line: logger.info("reconcile output", line=line))
    for message in pipeline.reconcile_all(ctx, progress):
        logger.info("reconciled", message=message)
    http = HttpDoor(ctx)
    try:
        asyncio.run(_serve(ctx, http, proxy.name, on_ready))
    finally:
        http.stop()
    logger.info("pushdock stopped")


async def _serve(ctx: Context, http: HttpDoor, proxy_name: str, on_ready: Callable[[str], None]) -> None:
    from gitserver.ssh import SSHDoor

    ssh = SSHDoor(ctx)
    ssh_host, ssh_port = await ssh.start()
    http_host, http_port = http.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    on_ready(f"pushdock serving: ssh on {ssh_host}:{ssh_port}, http on {http_host}:{http_port}, "
             f"proxy {proxy_name} on :{ctx.settings.proxy_port}")
    logger.info("serving", ssh_port=ssh_port, http_port=http_port, proxy=proxy_name)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        logger.info("stopping: workers in flight finish on their own", workers=len(ssh.workers))
        await ssh.close()
