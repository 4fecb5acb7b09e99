"""A terminal for SSH commands whose client asked for one (`ssh -t`): the worker runs on a pty.

The pty's size follows the client's window; output goes back on the channel's stdout (a terminal
has one stream, as under OpenSSH); the client's keys go to the pty as they come. `run APP bash`
is then interactive: the worker sees a terminal and gives the one-off container a TTY.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct
import termios
from typing import Any

from loguru import logger

from gitserver.sshlib import asyncssh
from pushdock.zygote import Worker, exec_worker

CHUNK = 65536


def set_size(fd: int, size: tuple[int, int, int, int]) -> None:
    """Set the window size (columns, rows, pixel width, pixel height, as SSH sends it) of a pty."""
    cols, rows, xpix, ypix = size
    if cols and rows:
        with contextlib.suppress(OSError):
            fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, xpix, ypix))


async def run_on_pty(process: asyncssh.SSHServerProcess[bytes], module: str, env: dict[str, str]) -> tuple[
        Worker, asyncio.Task[None]]:
    """Start the worker (`python -m MODULE`) on a new pty; returns it and the task that pumps bytes until the
    pty closes."""
    master, slave = os.openpty()
    set_size(slave, process.get_terminal_size())
    try:
        # a session of its own: a Ctrl-C of `serve` must not kill a deploy in progress
        worker = await exec_worker(module, {**env, "TERM": process.get_terminal_type() or "xterm"},
                                   stdin=slave, stdout=slave, stderr=slave)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    os.set_blocking(master, False)
    return worker, asyncio.create_task(_pump(process, master))


async def _pump(process: asyncssh.SSHServerProcess[bytes], master: int) -> None:
    feed = asyncio.create_task(_feed(process, master))
    try:
        await _drain(process, master)
    finally:
        feed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feed
        os.close(master)


async def _drain(process: asyncssh.SSHServerProcess[bytes], master: int) -> None:
    """pty -> client until every slave end is closed (EIO); keep draining once the client is gone."""
    client = True
    while True:
        await _ready(master, write=False)
        try:
            data = os.read(master, CHUNK)
        except BlockingIOError:
            continue
        except OSError:  # EIO: the worker (and its children) closed the terminal
            return
        if not data:
            return
        if not client:
            continue
        try:
            process.stdout.write(data)
            await process.stdout.drain()
        except Exception as e:  # the channel is closed: the worker must still be able to finish
            logger.debug("ssh client gone; draining the terminal", error=repr(e))
            client = False


async def _feed(process: asyncssh.SSHServerProcess[bytes], master: int) -> None:
    """client -> pty; window changes resize it. Ends at the client's EOF or disappearance."""
    while True:
        try:
            data = await process.stdin.read(CHUNK)
        except asyncssh.TerminalSizeChanged as e:
            set_size(master, (e.width, e.height, e.pixwidth, e.pixheight))
            continue
        except (asyncssh.BreakReceived, asyncssh.SignalReceived):
            continue
        except Exception as e:  # connection lost
            logger.debug("ssh terminal input ended", error=repr(e))
            return
        if not data:
            return
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(master, view):]
            except BlockingIOError:
                await _ready(master, write=True)
            except OSError:
                return


async def _ready(fd: int, *, write: bool) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()
    add, remove = (loop.add_writer, loop.remove_writer) if write else (loop.add_reader, loop.remove_reader)

    def wake() -> None:
        if not done.done():
            done.set_result(None)

    add(fd, wake)
    try:
        await done
    finally:
        remove(fd)
