"""Writing a pushed file out without holding it whole.

dulwich hands a blob over as one object: a 100 MB file cost the export ~290 MB (inflated chunks, their join,
the object). A blob stored whole in a pack (git does not delta big files) is inflated here in 64 KiB steps
straight into the file; a delta or a loose object still comes through dulwich, chunk by chunk, never joined.
"""

from __future__ import annotations

import zlib
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from dulwich.object_store import BaseObjectStore
    from dulwich.objects import ObjectID

STEP = 65536
BLOB = 3


def write_blob(store: BaseObjectStore, sha: ObjectID, out: IO[bytes]) -> int:
    """Write the content of blob `sha` (hex) to `out`; its size."""
    for pack in getattr(store, "packs", ()):
        try:
            offset = pack.index.object_offset(sha)
        except KeyError:
            continue
        with open(pack.data.path, "rb") as f:
            f.seek(offset)
            kind, size = _header(f)
            if kind == BLOB:
                return _inflate(f, size, out)
        break
    size = 0
    for chunk in store[sha].as_raw_chunks():
        out.write(chunk)
        size += len(chunk)
    return size


def _header(f: IO[bytes]) -> tuple[int, int]:
    byte = f.read(1)[0]
    kind, size, shift = (byte >> 4) & 7, byte & 0x0F, 4
    while byte & 0x80:
        byte = f.read(1)[0]
        size |= (byte & 0x7F) << shift
        shift += 7
    return kind, size


def _inflate(f: IO[bytes], size: int, out: IO[bytes]) -> int:
    z = zlib.decompressobj()
    written = 0
    while not z.eof:
        data = f.read(STEP)
        if not data:
            raise zlib.error("the pack ends inside an object")
        while data:
            chunk = z.decompress(data, STEP)
            written += len(chunk)
            if written > size:
                raise zlib.error("an object inflates to more than its size")
            out.write(chunk)
            data = z.unconsumed_tail if not z.eof else b""
    if written != size:
        raise zlib.error("an object inflates to less than its size")
    return written
