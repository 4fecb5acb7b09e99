"""The stable addresses' DNAT as a native nftables map (issue 22): one app's switch is one element replaced.

A table of this data dir (`ip pushdock_<id>`) holds one map, stable port -> upstream address . port, and one
rule in a nat chain of the output hook: new connections to the stable address are sent where the map says.
The whole table is written with one `nft -f -` (one transaction: table, chain, rule and every element) when it
is created or not known; a redeploy then replaces the changed elements through nf_tables' netlink socket
in-process, a delete and an add per element in one batch (atomic: no connection sees a missing element).

Why not a program per switch: every `iptables` or `nft` call reads the host's whole ruleset (Docker's rules
too), and when its netlink socket closes after a commit the kernel waits for an RCU grace period (nf_tables
frees the replaced objects before the close returns): 10-20 ms here, where the batch itself takes ~20 µs.
The socket is kept open for the life of the process, so that wait falls on no one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import threading

from pushdock import proc
from pushdock.errors import PushdockError
from pushdock.routing import Upstream

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM = 12, 14
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE = 0x1, 0x4, 0x400
NLMSG_ERROR = 2
NLA_F_NESTED = 0x8000
NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_ELEMENTS = 1, 2, 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_DATA = 1, 2
NFTA_DATA_VALUE = 1
MAP = "up"
CHAIN = "out"
TIMEOUT = 5.0

Rules = dict[int, Upstream]

class MapError(Exception):
    """nft refused the table: the caller keeps what ran."""


def available() -> bool:
    """Whether the nft program is here (the table is written with it)."""
    return shutil.which("nft") is not None


class NatMap:
    """The nftables table of one data dir: `address`:PORT -> the map's element for PORT."""

    def __init__(self, table: str, address: str) -> None:
        self.table = table
        self.address = address

    def write(self, rules: Rules) -> None:
        """Create or rewrite the whole table in one transaction."""
        t = f"ip {self.table}"
        lines = [
            f"table {t} {{",
            f"  map {MAP} {{ type inet_service : ipv4_addr . inet_service; }}",
            f"  chain {CHAIN} {{ type nat hook output priority -100; policy accept; }}",
            "}",
            f"flush chain {t} {CHAIN}",
            f"add rule {t} {CHAIN} ip daddr {self.address} dnat ip to tcp dport map @{MAP}",
            f"flush map {t} {MAP}",
        ]
        if rules:
            elements = ", ".join(f"{p} : {u.host} . {u.port}" for p, u in sorted(rules.items()))
            lines.append(f"add element {t} {MAP} {{ {elements} }}")
        _nft("\n".join(lines) + "\n")

    def delete(self) -> None:
        """Remove the table (nothing is steered any more); no table: nothing to do."""
        with contextlib.suppress(MapError):
            _nft(f"delete table ip {self.table}\n")

    def replace(self, set_: Rules, unset: set[int]) -> None:
        """In one netlink batch (one transaction): delete the elements of `unset` and of every port of `set_`
        already in the map (`had`: the caller's knowledge), then add `set_`. OSError if the kernel refused
        (no such table or element: the caller rewrites the table)."""
        dels = [_element(p) for p in sorted(unset)]
        adds = [_element(p, u) for p, u in sorted(set_.items())]
        _link.send(self.table, dels, adds)


def _element(port: int, to: Upstream | None = None) -> bytes:
    body = _attr(NLA_F_NESTED | NFTA_SET_ELEM_KEY, _attr(NFTA_DATA_VALUE, struct.pack(">H", port)))
    if to is not None:  # ipv4_addr . inet_service: each part in a 4-byte register
        data = socket.inet_aton(to.host) + struct.pack(">H2x", to.port)
        body += _attr(NLA_F_NESTED | NFTA_SET_ELEM_DATA, _attr(NFTA_DATA_VALUE, data))
    return _attr(NLA_F_NESTED | NFTA_LIST_ELEM, body)


def _attr(kind: int, data: bytes) -> bytes:
    head = struct.pack("=HH", 4 + len(data), kind) + data
    return head + b"\0" * (-len(head) % 4)


def _message(kind: int, flags: int, seq: int, body: bytes, *, family: int = socket.AF_INET, res: int = 0) -> bytes:
    payload = struct.pack("=BBH", family, 0, socket.htons(res)) + body
    return struct.pack("=IHHII", 16 + len(payload), kind, flags, seq, 0) + payload


class _Link:
    """The process's netlink socket to nf_tables, kept open (closing one after a commit waits a grace period)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # shared by every data dir's map in this process
        self.sock: socket.socket | None = None
        self.seq = 0

    def forked(self) -> None:
        """In a forked child: a socket of its own (two processes reading one socket would take each other's
        replies) and a lock no thread of the parent holds. Closing the child's copy leaves the parent's open."""
        self.lock = threading.Lock()
        self._drop()

    def send(self, table: str, dels: list[bytes], adds: list[bytes]) -> None:
        """One batch: the delete of `dels`, then the add of `adds`; returns once the kernel committed it."""
        head = (_attr(NFTA_SET_ELEM_LIST_TABLE, table.encode() + b"\0")
                + _attr(NFTA_SET_ELEM_LIST_SET, MAP.encode() + b"\0"))
        with self.lock:
            base = self.seq = (self.seq + 4) % (1 << 30)
            msgs = [_message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, base, b"", family=socket.AF_UNSPEC,
                             res=NFNL_SUBSYS_NFTABLES)]
            want = set()
            for kind, flags, elements in ((NFT_MSG_DELSETELEM, 0, dels), (NFT_MSG_NEWSETELEM, NLM_F_CREATE, adds)):
                if elements:
                    want.add(base + len(msgs))
                    msgs.append(_message(NFNL_SUBSYS_NFTABLES << 8 | kind, NLM_F_REQUEST | NLM_F_ACK | flags,
                                         base + len(msgs),
                                         head + _attr(NLA_F_NESTED | NFTA_SET_ELEM_LIST_ELEMENTS, b"".join(elements))))
            if not want:
                return
            msgs.append(_message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, base + len(msgs), b"", family=socket.AF_UNSPEC,
                                 res=NFNL_SUBSYS_NFTABLES))
            self.seq = base + len(msgs)
            try:
                self._exchange(b"".join(msgs), want)
            except BaseException:
                self._drop()  # replies of a failed batch must not be read as the next one's
                raise

    def _exchange(self, data: bytes, want: set[int]) -> None:
        if self.sock is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            sock.settimeout(TIMEOUT)
            sock.bind((0, 0))
            self.sock = sock
        self.sock.sendall(data)
        while want:
            reply = self.sock.recv(1 << 16)
            off = 0
            while off + 16 <= len(reply):
                length, kind, _flags, seq = struct.unpack_from("=IHHI", reply, off)
                if kind == NLMSG_ERROR and seq in want:
                    err = struct.unpack_from("=i", reply, off + 16)[0]
                    if err:
                        raise OSError(-err, f"nf_tables: {os.strerror(-err)}")
                    want.discard(seq)
                off += max((length + 3) & ~3, 16)

    def _drop(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None


_link = _Link()
os.register_at_fork(after_in_child=_link.forked)


def _nft(script: str) -> None:
    try:
        res = proc.run(["nft", "-f", "-"], input=script, check=False, timeout=30)
    except (OSError, PushdockError) as e:
        raise MapError(f"nft: {e}") from e
    if res.returncode != 0:
        raise MapError(f"nft: {(res.stderr or res.stdout).strip()[:300]}")
