"""Record blocks: the byte layout shared by the actor's spool files and the transition channel's batches.

A *record* is one encoded message frame (see :mod:`~automem_jax.transport.messages`) behind a 16-byte header::

    u32 length | u32 check | u64 stream sequence number | frame (length bytes)     (little endian)

``check`` is the low 32 bits of the frame's XXH3-64 hash (the ``xxhash`` package): it detects a torn or
corrupted record like a CRC-32 would, at a third of zlib.crc32's cost per byte on this kind of CPU.

A *block* is records laid end to end with consecutive sequence numbers. The actor encodes a whole
``send_many`` call straight into one block (no per-record ``bytes`` objects, no joins), writes that block to
its spool with one system call, keeps it in memory, and later sends a slice of it as the data frame of a
batch without copying it again: what travels is exactly what is on disk.

The check protects records at rest (a torn or corrupted spool file). On the wire, TCP and ZeroMQ already
guarantee integrity, so the learner checks the structure (lengths and sequence numbers) and validates each
frame by decoding it, but does not recompute checks.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import xxhash

HEADER = struct.Struct("<IIQ")  # length, check, seq
HDR_LEN = HEADER.size
_pack_into = HEADER.pack_into
_unpack_from = HEADER.unpack_from
_pack_seq_into = struct.Struct("<Q").pack_into
_BLANK_HEADER = bytes(HDR_LEN)

_xxh3 = xxhash.xxh3_64_intdigest


def checksum(frame: bytes | memoryview | bytearray) -> int:
    return _xxh3(frame) & 0xFFFFFFFF


EncodeInto = Callable[[Any, bytearray], None]  # appends one frame for the item to the bytearray


class RecordBlock:
    """Records being appended together: ``data`` in the layout above; sequence numbers are set by :meth:`number`."""

    __slots__ = ("data", "offsets", "payload_bytes")

    def __init__(self, data: bytearray, offsets: list[int]) -> None:
        self.data = data
        self.offsets = offsets  # start of each record's header within data
        self.payload_bytes = len(data) - HDR_LEN * len(offsets)

    def __len__(self) -> int:
        return len(self.offsets)

    @classmethod
    def encode(cls, items: Iterable[Any], encode_into: EncodeInto) -> RecordBlock:
        """Encode each item straight into the block (``encode_into`` appends its frame; it may raise, and then
        nothing was written anywhere)."""
        data = bytearray()
        offsets: list[int] = []
        for item in items:
            offsets.append(len(data))
            data += _BLANK_HEADER
            encode_into(item, data)
        # headers in a second pass: one buffer export for the whole block (cheaper than one per record)
        ends = offsets[1:] + [len(data)]
        with memoryview(data) as view:
            for start, end in zip(offsets, ends, strict=True):
                _pack_into(data, start, end - start - HDR_LEN, _xxh3(view[start + HDR_LEN:end]) & 0xFFFFFFFF, 0)
        return cls(data, offsets)

    @classmethod
    def from_frames(cls, frames: Iterable[bytes | memoryview]) -> RecordBlock:
        def copy(frame: bytes | memoryview, data: bytearray) -> None:
            data += frame

        return cls.encode(frames, copy)

    def number(self, first_seq: int) -> None:
        """Write the sequence numbers ``first_seq, first_seq + 1, ...`` into the headers."""
        data = self.data
        for i, off in enumerate(self.offsets):
            _pack_seq_into(data, off + 8, first_seq + i)


def iter_records(buf: bytes | memoryview, first_seq: int, count: int) -> Iterator[memoryview | None]:
    """The ``count`` frames of a block that should hold records ``first_seq ..``, as zero-copy views.

    Yields ``None`` for a position whose header is missing, truncated or numbered wrongly; every position
    after a broken header is ``None`` too (its boundaries are unknown), so callers always see ``count``
    items and can consume every position.
    """
    view = buf if isinstance(buf, memoryview) else memoryview(buf)
    end = len(view)
    off = 0
    for i in range(count):
        if off + HDR_LEN > end:
            yield from (None for _ in range(count - i))
            return
        n, _crc, seq = _unpack_from(view, off)
        body_end = off + HDR_LEN + n
        if seq != first_seq + i or body_end > end:
            yield from (None for _ in range(count - i))
            return
        yield view[off + HDR_LEN:body_end]
        off = body_end


def check_record(view: memoryview | bytes, off: int, seq: int) -> memoryview | None:
    """The frame of the record at ``off`` when its header matches ``seq`` and its check is right (a spool read)."""
    if off + HDR_LEN > len(view):
        return None
    n, check, sq = _unpack_from(view, off)
    body = memoryview(view)[off + HDR_LEN:off + HDR_LEN + n]
    if sq != seq or len(body) != n or checksum(body) != check:
        return None
    return body


def placeholder(seq: int) -> bytes:
    """A record with an empty frame at ``seq``: it keeps positions aligned where a record was lost; receivers drop
    the empty frame as malformed and move on."""
    return HEADER.pack(0, 0, seq)
