"""Taking in a pushed pack with memory bounded by its deltas, not by its largest object.

dulwich's `add_thin_pack` keeps every object whole while copying it off the wire (its compressed and its
inflated bytes), then inflates it whole again to index it: a 100 MB incompressible blob cost the worker
~200 MB. Here the pack is copied to disk while whole objects (commits, trees, blobs, tags) are inflated in
64 KiB steps straight into their hash, so they never sit in memory; only deltas, and the objects they are
deltas against, go through dulwich's indexer (a delta needs its base whole). Then dulwich completes the pack
as `add_thin_pack` does (bases of a thin pack appended, the index written, the pack moved into place).
"""

from __future__ import annotations

import binascii
import contextlib
import os
import tempfile
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dulwich.object_store import PackInputTooLarge
from dulwich.objects import ShaFile
from dulwich.pack import (
    OFS_DELTA,
    REF_DELTA,
    PackData,
    PackIndexer,
    UnpackedObject,
    extend_pack,
    iter_sha1,
    write_pack_index,
)

if TYPE_CHECKING:
    from dulwich.object_store import DiskObjectStore

STEP = 65536  # bytes read from the wire, and inflated, at a time
TYPE_NAMES = {1: b"commit", 2: b"tree", 3: b"blob", 4: b"tag"}
BLOB = 3
Entry = tuple[bytes, int, int | None]  # an index entry: (binary sha, offset in the pack, crc32)


class BadPack(Exception):
    """The pack is malformed (message: one line)."""


class _Wire:
    """The pack as it arrives: read exactly or what is there, copied to `out` and hashed, within `limit`."""

    def __init__(self, read_all: Callable[[int], bytes], read_some: Callable[[int], bytes] | None,
                 out: Any, hash_func: Callable[[], Any], limit: int | None) -> None:
        self.read_all, self.read_some = read_all, read_some
        self.out = out
        self.sha = hash_func()
        self.limit = limit
        self.buf = bytearray()
        self.pos = 0  # start of the unconsumed bytes in buf
        self.offset = 0  # bytes of the pack consumed (and written) so far
        self.received = 0

    def _fill(self, want: int) -> None:
        data = self.read_some(STEP) if self.read_some else self.read_all(max(want, 1))
        if not data:
            raise BadPack("the pack ends early")
        self.received += len(data)
        if self.limit and self.received > self.limit:
            raise PackInputTooLarge(f"pack exceeds maximum input size of {self.limit} bytes")
        if self.pos:
            del self.buf[: self.pos]
            self.pos = 0
        self.buf += data

    def take(self, n: int, *, hashed: bool = True) -> bytes:
        """Exactly n bytes of the pack."""
        while len(self.buf) - self.pos < n:
            self._fill(n - (len(self.buf) - self.pos))
        data = bytes(self.buf[self.pos : self.pos + n])
        self._consume(data, hashed)
        return data

    def some(self, most: int) -> bytes:
        """What is buffered (at least a byte, at most `most`), not consumed yet."""
        if self.pos == len(self.buf):
            self._fill(most)
        return bytes(self.buf[self.pos : self.pos + most])

    def consume(self, data: bytes) -> None:
        """`data`, a prefix of what `some` returned, is used."""
        self._consume(data, True)

    def _consume(self, data: bytes, hashed: bool) -> None:
        self.out.write(data)
        if hashed:
            self.sha.update(data)
        self.pos += len(data)
        self.offset += len(data)


def _inflate(wire: _Wire, size: int, sink: Callable[[bytes], object] | None, crc: int = 0) -> int:
    """Inflate one zlib stream of `size` bytes off the wire in steps; the CRC32 of `crc`'s bytes and its own."""
    z = zlib.decompressobj()
    produced = 0
    most = 4096  # a small first bite: most objects end within it, and zlib copies what follows their end
    while not z.eof:
        chunk = wire.some(most)
        most = STEP
        out = z.decompress(chunk, STEP)
        while True:
            produced += len(out)
            if produced > size:
                raise BadPack("an object inflates to more than its stated size")
            if sink is not None and out:
                sink(out)
            if not z.unconsumed_tail or z.eof:
                break
            out = z.decompress(z.unconsumed_tail, STEP)
        # the stream's end: what follows it is the next object's (zlib leaves unconsumed_tail stale then)
        used = chunk[: len(chunk) - len(z.unused_data)] if z.eof else chunk
        crc = binascii.crc32(used, crc)
        wire.consume(used)
    if produced != size:
        raise BadPack("an object inflates to less than its stated size")
    return crc & 0xFFFFFFFF


def _object_header(wire: _Wire) -> tuple[int, int, bytes]:
    """Type, inflated size and the header's bytes (an index entry's CRC32 covers them)."""
    raw = wire.take(1)
    kind, size, shift = (raw[0] >> 4) & 7, raw[0] & 0x0F, 4
    while raw[-1] & 0x80:
        raw += wire.take(1)
        size |= (raw[-1] & 0x7F) << shift
        shift += 7
    return kind, size, raw


def _ofs_delta_base(wire: _Wire) -> int:
    byte = wire.take(1)[0]
    delta = byte & 0x7F
    while byte & 0x80:
        byte = wire.take(1)[0]
        delta = ((delta + 1) << 7) | (byte & 0x7F)
    return delta


def add_pack(store: DiskObjectStore, read_all: Callable[[int], bytes],
             read_some: Callable[[int], bytes] | None, *, max_input_size: int | None = 0) -> None:
    """Take a (thin) pack off the wire into `store`; BadPack, PackInputTooLarge or dulwich's errors if refused.

    Every object is checked as dulwich checks it (commits, trees and tags parse); a failure leaves no file.
    """
    fmt = store.object_format
    fd, path = tempfile.mkstemp(dir=store.path, prefix="tmp_pack_")
    done: list[str] = []
    try:
        with os.fdopen(fd, "w+b") as f:
            os.chmod(path, 0o444)
            wire = _Wire(read_all, read_some, f, fmt.hash_func, max_input_size)
            indexer = _Indexer(f, fmt.hash_func, resolve_ext_ref=store.get_raw)
            entries = _copy(wire, indexer, fmt.hash_func, fmt.oid_length)
            f.flush()
            with PackData(path, file=f, object_format=fmt) as data:
                indexer.set_pack_data(data)
                try:
                    resolved = {offset: (sha, offset, crc) for sha, offset, crc in indexer}
                except AssertionError:  # dulwich's check that every delta found its base
                    raise BadPack("a delta in the pack has no base in it") from None
            entries = [e for e in entries if e[1] not in resolved] + list(resolved.values())
            # A thin pack: append the objects its deltas are against, as dulwich's add_thin_pack does.
            pack_sha, extra = extend_pack(f, set(indexer.ext_refs()), get_raw=store.get_raw, object_format=fmt,
                                          compression_level=store.pack_compression_level)
            entries = sorted([*entries, *extra])
            if not entries:  # a push of commits the server has (a new branch at an old commit): nothing to keep
                return
            f.flush()
            os.fsync(f.fileno())
        base = os.path.join(store.pack_dir, "pack-" + iter_sha1(e[0] for e in entries).decode("ascii"))
        if os.path.exists(base + ".idx"):  # the same objects are there already
            return
        with open(path + ".idx", "wb") as idx:
            write_pack_index(idx, entries, pack_sha, version=store.pack_index_version)
            idx.flush()
            os.fsync(idx.fileno())
        os.replace(path, base + ".pack")
        done.append(base + ".pack")
        os.replace(path + ".idx", base + ".idx")  # the index last: a pack without one is not read
        store.packs  # noqa: B018 - rescans the pack directory, so the new objects are found at once
    except BaseException:
        for leftover in (path, path + ".idx", *done):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


class _Indexer(PackIndexer):
    """dulwich's indexer, checking as it goes that each commit, tree and tag it resolves parses."""

    def _result(self, unpacked: UnpackedObject) -> Any:
        kind, chunks = unpacked.obj_type_num, unpacked.obj_chunks
        if kind != BLOB:
            if kind is None or chunks is None:  # dulwich fills both in as it resolves an object
                raise BadPack("an object in the pack did not resolve")
            _parse(kind, chunks)
        return super()._result(unpacked)


def _parse(kind: int, chunks: list[bytes]) -> None:
    ShaFile.from_raw_chunks(kind, chunks)  # raises on a malformed object, as dulwich's own check does


def _copy(
    wire: _Wire, indexer: PackIndexer, hash_func: Callable[[], Any], hash_size: int
) -> list[Entry]:
    """Copy every object; index entries of the whole ones. Deltas (and their bases) are recorded in `indexer`."""
    header = wire.take(12)
    if header[:4] != b"PACK" or int.from_bytes(header[4:8], "big") not in (2, 3):
        raise BadPack("not a git pack")
    count = int.from_bytes(header[8:12], "big")
    entries: list[Entry] = []
    whole: dict[int, int] = {}  # offset -> type of every whole object
    by_sha: dict[bytes, int] = {}
    bases_ofs: set[int] = set()
    bases_sha: set[bytes] = set()
    for _ in range(count):
        offset = wire.offset
        kind, size, raw = _object_header(wire)
        if kind in TYPE_NAMES:
            digest = hash_func()
            digest.update(TYPE_NAMES[kind] + b" " + str(size).encode() + b"\0")
            body: list[bytes] = []  # commits, trees and tags are kept to be parsed; blobs only hashed

            def sink(data: bytes, digest: Any = digest, body: list[bytes] = body, keep: bool = kind != BLOB) -> None:
                digest.update(data)
                if keep:
                    body.append(data)

            crc = _inflate(wire, size, sink, binascii.crc32(raw))
            if kind != BLOB:
                _parse(kind, body)
            sha = digest.digest()
            entries.append((sha, offset, crc))
            whole[offset], by_sha[sha] = kind, offset
        elif kind == OFS_DELTA:
            distance = _ofs_delta_base(wire)
            _inflate(wire, size, None)
            indexer.record(_unpacked(kind, base=distance, offset=offset))
            bases_ofs.add(offset - distance)
        elif kind == REF_DELTA:
            base_sha = wire.take(hash_size)
            _inflate(wire, size, None)
            indexer.record(_unpacked(kind, base=base_sha, offset=offset))
            bases_sha.add(base_sha)
        else:
            raise BadPack(f"unknown object type {kind} in the pack")
    trailer = wire.take(hash_size, hashed=False)
    if trailer != wire.sha.digest():
        raise BadPack("the pack's checksum does not match its content")
    # whole objects that deltas need: the indexer inflates them (again) as the bases of its chains
    for offset in sorted(bases_ofs | {by_sha[s] for s in bases_sha if s in by_sha}):
        if offset in whole:
            indexer.record(_unpacked(whole[offset], base=None, offset=offset))
    return entries


def _unpacked(kind: int, *, base: int | bytes | None, offset: int) -> UnpackedObject:
    """What dulwich's indexer records of an object: its type, where it is and what it is a delta against."""
    unpacked = UnpackedObject(kind, delta_base=base)
    unpacked.offset = offset
    return unpacked
