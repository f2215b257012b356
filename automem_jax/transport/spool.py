"""The actor's durable spool: an append-only, segmented log of encoded frames, kept until acknowledged.

Every record the actor sends is written here first: the write reaches the operating system before
``append_block`` returns, so a crash of the process loses nothing. What a crash of the *machine* can lose
is bounded by ``fsync``: with ``fsync_interval_s`` > 0 a background thread fsyncs the active segment that
often, and every closed segment (and the directory) within that interval, so the caller never waits on the
disk; with ``fsync_interval_s`` = 0 every append is fsync'd before it returns. Records get consecutive
sequence numbers starting at 1 in a *stream* whose random id is created with the spool and kept in
``meta.json``; the learner de-duplicates by (stream, sequence number).

Layout of a spool directory::

    LOCK                       flock'd by the owning process (a second process gets a clear error)
    meta.json                  {"format": 2, "stream": "...", "committed": N, "created_at": ...}
    00000000000000000001.seg   records 1.. in the record-block layout of transport.blocks:
                               u32 length | u32 check | u64 seq | frame, end to end
    00000000000000004097.seg   ...

Appends take a whole :class:`~automem_jax.transport.blocks.RecordBlock` (one ``send_many``) and write it
with one system call; the newest blocks also stay in memory (``cache_bytes``), and :meth:`Spool.read_block`
hands out a contiguous slice of them, which the sender puts on the wire as is.

``commit(seq)`` marks everything up to ``seq`` acknowledged; closed segments entirely at or below it are
deleted. On open, segments are scanned and checked; a torn record at the end of the last segment (a crash
mid-write) is truncated away. The spool is bounded by ``max_bytes``: past it, and when the disk is full,
an append raises :class:`SpoolFullError` with what is pending and where, and the spool stays valid.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import errno
import fcntl
import json
import logging
import os
import threading
import time
import uuid
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from automem_jax.transport.blocks import HDR_LEN, RecordBlock, check_record, iter_records, placeholder

log = logging.getLogger("automem.transport.spool")

META_FORMAT = 2  # 1 used CRC-32 record checks; its files are not readable by this version


class SpoolError(RuntimeError):
    """The spool cannot be used (locked by another process, unreadable metadata)."""


class SpoolFullError(SpoolError):
    """No room for another record: the size bound was reached or the disk is full."""


@dataclass
class _Segment:
    path: Path
    first_seq: int
    offsets: array = field(default_factory=lambda: array("Q"))  # offset of record first_seq + i
    size: int = 0

    @property
    def last_seq(self) -> int:  # first_seq - 1 when empty
        return self.first_seq + len(self.offsets) - 1


@dataclass
class _Cached:
    """A block as appended: records first_seq .. first_seq + len(offsets) - 1 (never modified after the append)."""

    first_seq: int
    data: bytearray
    offsets: list[int]

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.offsets) - 1


def _seg_name(first_seq: int) -> str:
    return f"{first_seq:020d}.seg"


class _Syncer:
    """fsyncs off the appending thread: the active segment every ``interval_s`` when written to, and each closed
    segment and the directory as soon as it can. Holds its own duplicates of the file descriptors."""

    def __init__(self, directory: Path, interval_s: float) -> None:
        self.dir = directory
        self.interval_s = interval_s
        self.dirty = False  # set by the appender after a write; cleared here before the fsync that covers it
        self._active: int | None = None
        self._closed: list[int] = []
        self._dir_dirty = False
        self._cv = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=f"spool-fsync-{directory.name}", daemon=True)
        self._thread.start()

    def set_active(self, fd: int | None) -> None:
        """A new active segment (``fd`` is duplicated; None = none): the previous one is fsync'd and closed soon."""
        dup = os.dup(fd) if fd is not None else None
        with self._cv:
            if self._active is not None:
                self._closed.append(self._active)
            self._active = dup
            self._dir_dirty = True
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                if not self._stop and not self._closed and not self._dir_dirty:
                    self._cv.wait(self.interval_s)
                closed, self._closed = self._closed, []
                dir_dirty, self._dir_dirty = self._dir_dirty, False
                active, stop = self._active, self._stop
            self._sync(closed, dir_dirty, active)
            if stop:
                return

    def _sync(self, closed: list[int], dir_dirty: bool, active: int | None) -> None:
        try:
            for fd in closed:
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            if dir_dirty:
                dfd = os.open(self.dir, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
            if active is not None and self.dirty:  # only this thread closes its descriptors: still open
                self.dirty = False
                os.fsync(active)
        except OSError as e:  # the records are still in the page cache and the files; report, keep going
            log.error("spool %s: fsync failed: %s", self.dir, e)

    def close(self) -> None:
        """Final fsync of everything, then stop."""
        with self._cv:
            self._stop = True
            self.dirty = True
            self._cv.notify()
        self._thread.join()
        with self._cv:
            if self._active is not None:
                os.close(self._active)
                self._active = None


class Spool:
    def __init__(self, directory: str | os.PathLike[str], *, max_bytes: int = 1 << 30, segment_bytes: int = 16 << 20,
                 fsync_interval_s: float = 1.0, cache_bytes: int = 64 << 20, meta_interval_s: float = 0.5) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync_interval_s = fsync_interval_s
        self.cache_bytes = cache_bytes
        self.meta_interval_s = meta_interval_s
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._acquire_lock()
        self._segments: list[_Segment] = []
        self._fd: int | None = None  # active (last) segment, opened for append
        self._bytes = 0
        self._meta_written = 0.0
        self.corrupt_records = 0
        # the newest blocks, in order; they cover records _cache[0].first_seq .. last_seq
        self._cache: collections.deque[_Cached] = collections.deque()
        self._cache_size = 0
        meta = self._load_meta()
        self.stream: str = meta["stream"]
        self.committed: int = int(meta["committed"])
        self.created_at: float = float(meta.get("created_at", time.time()))
        self._syncer = _Syncer(self.dir, fsync_interval_s) if fsync_interval_s > 0 else None
        self._scan()
        self.last_seq = self._segments[-1].last_seq if self._segments else self.committed
        if self.last_seq < self.committed:  # every record was committed and deleted
            self.last_seq = self.committed
        self._write_meta(force=True)

    # ---------------------------------------------------------------------------------------------- setup
    def _acquire_lock(self) -> int:
        path = self.dir / "LOCK"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise SpoolError(f"spool {self.dir} is in use by another process (pid {holder}); "
                             "give each actor its own spool directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return fd

    def _load_meta(self) -> dict:
        path = self.dir / "meta.json"
        if not path.exists():
            return {"format": META_FORMAT, "stream": uuid.uuid4().hex, "committed": 0, "created_at": time.time()}
        try:
            meta = json.loads(path.read_text())
            if meta.get("format") != META_FORMAT or not isinstance(meta.get("stream"), str):
                raise ValueError(f"unsupported format {meta.get('format')!r}")
            int(meta["committed"])
            return meta
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SpoolError(f"spool metadata {path} is unreadable ({e}); move the directory aside to start a new "
                             "stream (its unsent records would then be lost)") from None

    def _write_meta(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._meta_written < self.meta_interval_s:
            return
        self._meta_written = now
        meta = {"format": META_FORMAT, "stream": self.stream, "committed": self.committed,
                "created_at": self.created_at}
        tmp = self.dir / "meta.json.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(meta, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.dir / "meta.json")
        except OSError as e:  # a full disk must not stop acknowledgements; the position is re-sent and de-duplicated
            log.warning("spool %s: could not persist the acknowledged position (%s)", self.dir, e)

    def _scan(self) -> None:
        names = sorted(p for p in self.dir.glob("*.seg") if p.stem.isdigit())
        for i, path in enumerate(names):
            seg = _Segment(path, int(path.stem))
            if self._segments and seg.first_seq != self._segments[-1].last_seq + 1:
                log.error("spool %s: records %d..%d are missing (segment files removed?); they will be skipped",
                          self.dir, self._segments[-1].last_seq + 1, seg.first_seq - 1)
            is_last = i == len(names) - 1
            with open(path, "rb") as f:
                data = f.read()
            off = 0
            while (body := check_record(data, off, seg.last_seq + 1)) is not None:
                seg.offsets.append(off)
                off += HDR_LEN + len(body)
            if off != len(data):
                if is_last:
                    log.warning("spool %s: truncating a torn record at the end of %s (%d bytes)", self.dir, path.name,
                                len(data) - off)
                    with open(path, "r+b") as f:
                        f.truncate(off)
                else:
                    self.corrupt_records += 1
                    log.error("spool %s: %s is corrupt at byte %d; the rest of that segment is skipped", self.dir,
                              path.name, off)
            seg.size = off
            if (seg.last_seq <= self.committed and not is_last) or not seg.offsets:
                path.unlink(missing_ok=True)
                continue
            self._segments.append(seg)
            self._bytes += seg.size
        if self._segments:
            self._set_active(os.open(self._segments[-1].path, os.O_WRONLY | os.O_APPEND))

    # --------------------------------------------------------------------------------------------- append
    @property
    def pending(self) -> int:
        """Records not yet committed."""
        return self.last_seq - self.committed

    @property
    def bytes(self) -> int:
        """Bytes of segment files on disk."""
        return self._bytes

    def _set_active(self, fd: int | None) -> None:
        old, self._fd = self._fd, fd
        if self._syncer is not None:
            self._syncer.set_active(fd)  # fsyncs the old one (its own duplicate) in the background
        elif old is not None:
            os.fsync(old)
        if old is not None:
            os.close(old)

    def _new_segment(self, first_seq: int) -> None:
        seg = _Segment(self.dir / _seg_name(first_seq), first_seq)
        fd = os.open(seg.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o644)
        self._segments.append(seg)
        self._set_active(fd)
        if self._syncer is None:
            dfd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def fits(self, nbytes: int, n: int = 1) -> bool:
        """Whether ``n`` records of ``nbytes`` in total (headers included when ``n`` is 0) fit under max_bytes."""
        return self._bytes + HDR_LEN * n + nbytes <= self.max_bytes

    def append(self, frame: bytes) -> int:
        """Write one record; returns its sequence number. Raises SpoolFullError (the spool stays valid)."""
        return self.append_block(RecordBlock.from_frames([frame]))

    def append_many(self, frames: Iterable[bytes | memoryview]) -> int:
        """Write records with one system call; returns the last sequence number."""
        return self.append_block(RecordBlock.from_frames(frames))

    def append_block(self, block: RecordBlock) -> int:
        """Number the block's records from ``last_seq + 1``, write them with one system call and keep the block
        in memory; returns the last sequence number. The block must not be modified afterwards."""
        n = len(block)
        if not n:
            return self.last_seq
        total = len(block.data)
        if self._bytes + total > self.max_bytes:
            raise SpoolFullError(
                f"spool {self.dir} is full: {self._bytes} bytes on disk + {total} new > max_bytes={self.max_bytes} "
                f"({self.pending} records not yet acknowledged by the learner); the learner is unreachable or slow. "
                "Raise transport.spool.max_bytes or check the learner")
        seg = self._segments[-1] if self._segments else None
        if seg is None or seg.size >= self.segment_bytes or seg.last_seq != self.last_seq:
            self._new_segment(self.last_seq + 1)
            seg = self._segments[-1]
        first = self.last_seq + 1
        block.number(first)
        self._write_all(block.data, seg)
        base = seg.size
        seg.offsets.extend([base + off for off in block.offsets])
        seg.size += total
        self._bytes += total
        self.last_seq = first + n - 1
        if self.cache_bytes:
            self._cache.append(_Cached(first, block.data, block.offsets))
            self._cache_size += total
            while self._cache_size > self.cache_bytes and self._cache:
                self._cache_size -= len(self._cache.popleft().data)
        if self._syncer is not None:
            self._syncer.dirty = True
        else:
            self.sync()
        return self.last_seq

    def _write_all(self, data: bytes | bytearray, seg: _Segment) -> None:
        assert self._fd is not None
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, view[done:])
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, seg.size)  # keep the segment a sequence of whole records
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise SpoolFullError(
                    f"disk full: cannot append to spool {self.dir} ({e.strerror}); {self.pending} records not yet "
                    f"acknowledged ({self._bytes} bytes) are kept. Free disk space or set transport.spool.dir to "
                    "another disk") from None
            raise SpoolError(f"cannot write to spool {self.dir}: {e}") from e
        finally:
            view.release()

    def sync(self) -> None:
        """fsync the active segment now."""
        if self._fd is not None:
            os.fsync(self._fd)

    # ----------------------------------------------------------------------------------------------- read
    def read_block(self, seq: int, max_n: int, max_bytes: int = 1 << 62) -> tuple[memoryview | bytes, int]:
        """Records ``seq, seq+1, ...`` as one contiguous block in the record layout, and how many it holds: at
        least one if any exists, at most ``max_n``, within ``max_bytes`` (headers included), never crossing a
        cached block or a segment. From memory this is a zero-copy view of what was appended.

        A record that cannot be read (missing or corrupt segment) comes back as an empty-frame placeholder, so
        positions stay aligned; the receiver drops it as malformed and moves on.
        """
        last = min(self.last_seq, seq + max_n - 1)
        if seq > last or seq < 1:
            return b"", 0
        cache = self._cache
        if cache and seq >= cache[0].first_seq:
            k = len(cache) - 1
            while cache[k].first_seq > seq:  # the transmit position is almost always in one of the newest blocks
                k -= 1
            blk = cache[k]
            i0 = seq - blk.first_seq
            i1 = min(last, blk.last_seq) - blk.first_seq
            start = blk.offsets[i0]
            end, n = _fit(blk.offsets, i0, i1, start, len(blk.data), max_bytes)
            return memoryview(blk.data)[start:end], n
        return self._read_disk(seq, last, max_bytes)

    def read(self, seq: int, max_n: int, max_bytes: int = 1 << 62) -> list[bytes]:
        """Records ``seq, seq+1, ...`` as separate frames (at least one if any exists, at most max_n, within
        max_bytes counting frames only); unreadable records are ``b""``."""
        out: list[bytes] = []
        size = 0
        while len(out) < max_n:
            blob, n = self.read_block(seq, max_n - len(out), max_bytes - size + HDR_LEN * (max_n - len(out)))
            if not n:
                break
            frames = [bytes(f) if f is not None else b"" for f in iter_records(blob, seq, n)]
            for f in frames:
                if out and size + len(f) > max_bytes:
                    return out
                out.append(f)
                size += len(f)
            seq += n
        return out

    def _read_disk(self, seq: int, last: int, max_bytes: int) -> tuple[bytes, int]:
        """Records seq..last from one segment (fewer at a segment end or past max_bytes), with one read."""
        seg = next((g for g in reversed(self._segments) if g.first_seq <= seq), None)
        if seg is None or seq > seg.last_seq:
            return self._bad(seq), 1
        i0 = seq - seg.first_seq
        i1 = min(last, seg.last_seq) - seg.first_seq
        start = seg.offsets[i0]
        end, n = _fit(seg.offsets, i0, i1, start, seg.size, max_bytes)
        try:
            with open(seg.path, "rb") as f:
                f.seek(start)
                data = f.read(end - start)
        except OSError as e:
            log.error("spool %s: cannot read %s: %s", self.dir, seg.path.name, e)
            data = b""
        parts: list[bytes] = []
        intact = True
        for k in range(i0, i0 + n):
            off = seg.offsets[k] - start
            body = check_record(data, off, seg.first_seq + k)
            if body is None:
                intact = False
                parts.append(self._bad(seg.first_seq + k))
            else:
                parts.append(data[off:off + HDR_LEN + len(body)])
        return (data if intact else b"".join(parts)), n

    def _bad(self, seq: int) -> bytes:
        self.corrupt_records += 1
        log.error("spool %s: record %d is missing or corrupt; sending an empty placeholder", self.dir, seq)
        return placeholder(seq)

    # ------------------------------------------------------------------------------------------ commit
    def commit(self, seq: int) -> int:
        """Mark records up to ``seq`` acknowledged; delete closed segments that are entirely acknowledged."""
        seq = min(seq, self.last_seq)
        if seq <= self.committed:
            return 0
        n = seq - self.committed
        self.committed = seq
        cache = self._cache
        while cache and cache[0].last_seq <= seq:
            self._cache_size -= len(cache.popleft().data)
        removed = False
        while len(self._segments) > 1 and self._segments[0].last_seq <= seq:
            seg = self._segments.pop(0)
            self._bytes -= seg.size
            seg.path.unlink(missing_ok=True)
            removed = True
        if len(self._segments) == 1 and self._segments[0].last_seq <= seq and self._segments[0].size >= self.segment_bytes:
            self._bytes -= self._segments[0].size
            self._set_active(None)
            self._segments.pop().path.unlink(missing_ok=True)
            removed = True
        self._write_meta(force=removed)
        return n

    def close(self) -> None:
        if self._lock_fd < 0:
            return
        try:
            if self._syncer is not None:
                self._syncer.close()  # fsyncs everything
                self._syncer = None
            elif self._fd is not None:
                self.sync()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._write_meta(force=True)
        finally:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Spool({str(self.dir)!r}, stream={self.stream[:8]}, committed={self.committed}, "
                f"last={self.last_seq}, bytes={self._bytes})")


def _fit(offsets: array | list[int], i0: int, i1: int, start: int, data_end: int, max_bytes: int) -> tuple[int, int]:
    """End offset and count of records i0..(at most i1) starting at ``start`` within ``max_bytes`` (at least one)."""
    end = offsets[i1 + 1] if i1 + 1 < len(offsets) else data_end
    if end - start <= max_bytes or i1 == i0:
        return end, i1 - i0 + 1
    # the first k with offsets[k] > start + max_bytes ends the last record that fits at offsets[k - 1]
    k = bisect.bisect_right(offsets, start + max_bytes, i0 + 1, i1 + 1)
    j = max(k - 1, i0 + 1)  # always at least one record
    return offsets[j], j - i0
