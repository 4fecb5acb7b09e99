"""What a container listens on, read from its network namespace's /proc/net/tcp and tcp6 (through `docker exec
cat`: no `ss` or `netstat` is needed in the image), to say why a web process never answered on $PORT.
"""

from __future__ import annotations

from typing import Any

LISTEN = "0A"  # the socket state column of /proc/net/tcp
LOOPBACK = ("0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F")  # 127.0.0.1, ::1


def explain(container: Any, port: str, app: str) -> str:
    """Why nothing answered on `port`, from what the container listens on; one clause, no newline."""
    uptime = f"`checks:set {app} type uptime`"
    listening = listening_ports(container)
    if listening is None:
        return f"it must listen on 0.0.0.0:$PORT (or use {uptime} if it serves no HTTP)"
    if not listening:
        return f"it listens on no TCP port (read the port from $PORT, or use {uptime} if it serves no HTTP)"
    if port.isdigit() and int(port) in listening:
        if listening[int(port)]:
            return f"it listens on 127.0.0.1:{port} only: listen on 0.0.0.0:$PORT, so the proxy can reach it"
        return f"it listens on {port} but does not answer HTTP there ({uptime} checks that it keeps running)"
    others = ", ".join(f"127.0.0.1:{p}" if loop else str(p) for p, loop in sorted(listening.items()))
    return f"it listens on {others} instead (read the port from $PORT, or use {uptime} if it serves no HTTP)"


def listening_ports(container: Any) -> dict[int, bool] | None:
    """{port: loopback only} of the container's listening TCP sockets; None if they cannot be read."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used
    import requests  # noqa: PLC0415 -- start-up: requests loads when first used

    try:
        code, out = container.exec_run(["cat", "/proc/net/tcp", "/proc/net/tcp6"], demux=False)
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        return None
    if not out or code not in (0, 1):  # 1: one of the two files is missing (no IPv6)
        return None
    return parse_proc_net_tcp(out.decode("ascii", "replace"))


def parse_proc_net_tcp(text: str) -> dict[int, bool]:
    """{local port: bound to loopback only} of the LISTEN sockets in /proc/net/tcp or tcp6 text."""
    ports: dict[int, bool] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[3] != LISTEN or ":" not in fields[1]:
            continue
        address, _, hex_port = fields[1].rpartition(":")
        try:
            port = int(hex_port, 16)
        except ValueError:
            continue
        ports[port] = ports.get(port, True) and address.upper() in LOOPBACK
    return ports
