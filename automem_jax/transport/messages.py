"""The wire format: typed, versioned messages encoded with msgspec msgpack, and a validating decoder.

Frame layout (one ZeroMQ frame per message)::

    b"AMJ" | protocol version (1 byte) | msgpack map of one message struct, tagged by its "type" field

The 4-byte prefix is checked before anything is decoded, so a frame from another program or from an
incompatible version is dropped without parsing it. Every message carries ``msg_id`` (unique; for a
transition it is the transition id, so a retried send is recognisably the same message), ``sender`` and
``sent_at`` (wall-clock seconds when the message object was made). Messages are msgpack *maps*, so a later
minor change may add optional fields without a version bump: decoders ignore fields they do not know.
Any change that an old decoder would misread must bump :data:`PROTOCOL_VERSION`.

:class:`Codec` is the only way frames are decoded. It enforces, in order: size (before decoding), prefix,
version, msgpack well-formedness, a known ``type`` tag, field types, per-type semantic checks, and the
set of types the calling socket expects. A rejected frame is counted under ``dropped/<reason>``, logged at
most once per reason per ``log_interval_s``, and the caller gets ``None``: bad input never raises.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from typing import Any

import msgspec

from automem_jax.records import EpisodeSummary, Transition
from automem_jax.transport.blocks import HDR_LEN, HEADER

PROTOCOL_VERSION = 2  # 2: a batch is a header frame plus a record-block frame
MAGIC = b"AMJ"
PREFIX = MAGIC + bytes([PROTOCOL_VERSION])
PREFIX_LEN = len(PREFIX)
_PREFIX_INT = int.from_bytes(PREFIX, "little")
_RECORD_START = struct.Struct("<IIQI")  # a record header (blocks.HEADER) and the first 4 bytes of its frame

log = logging.getLogger("automem.transport")

# Why a received frame was dropped (each is a counter ``dropped/<reason>``).
DROP_REASONS = (
    "oversized",  # larger than max_message_bytes (checked before decoding)
    "bad_magic",  # not our prefix: another program, random bytes, a truncated frame
    "version",  # our prefix with another protocol version
    "malformed",  # not valid msgpack
    "unknown_type",  # a msgpack map whose "type" tag is missing or unknown
    "invalid",  # known type with wrong or missing fields, or failing a semantic check
    "unexpected",  # a valid message of a type this socket does not accept
    "bad_envelope",  # wrong number or shape of ZeroMQ frames around the message
)


def new_msg_id() -> str:
    return uuid.uuid4().hex


class Msg(msgspec.Struct, tag_field="type", kw_only=True, gc=False):
    """Fields common to every message.

    ``gc=False``: message objects hold plain data (no reference cycles are possible), so the garbage collector
    need not track them; a learner holding many received messages pays less for collections.
    """

    msg_id: str
    sender: str
    sent_at: float = msgspec.field(default_factory=time.time)


# ---------------------------------------------------------------------------------------------------------
# actor -> learner: liveness and identity. Both also carry the sender's position in its reliable stream, so
# the learner's reply (an Ack) tells the sender at once what to replay after a reconnect.


class _PeerStatus(Msg, kw_only=True):
    pid: int = 0
    host: str = ""
    versions: dict[str, int | str] = msgspec.field(default_factory=dict)  # package, protocol, adapter, schema
    counters: dict[str, float] = msgspec.field(default_factory=dict)
    stream: str = ""  # the sender's spool stream id ("" = no reliable stream)
    sent_through: int = 0  # highest stream sequence number sent before this message
    committed: int = 0  # highest sequence number the sender knows to be committed (deleted from its spool)


class Hello(_PeerStatus, tag="hello", kw_only=True):
    role: str = "actor"
    started_at: float = 0.0


class Heartbeat(_PeerStatus, tag="heartbeat", kw_only=True):
    pending: int = 0  # records in the sender's spool not yet committed


# ---------------------------------------------------------------------------------------------------------
# actor -> learner: data (always inside a DataBatch on the transition channel)


class TransitionMsg(Msg, tag="transition", kw_only=True):
    transition: Transition


class EpisodeSummaryMsg(Msg, tag="episode_summary", kw_only=True):
    summary: EpisodeSummary


# ---------------------------------------------------------------------------------------------------------
# learner / reviewer -> actors: versions (PUB/SUB, and the latest-state request/reply)


class AdapterAnnouncement(Msg, tag="adapter", kw_only=True):
    version: int
    path: str  # PEFT adapter directory (local path or URL the actors can read)
    base_model: str
    created_at: float
    sha256: str | None = None  # of adapter_model.safetensors, when computed


class SchemaAnnouncement(Msg, tag="schema", kw_only=True):
    version: int
    hash: str
    document: dict[str, Any]  # the schema document, JSON-compatible
    parent_version: int | None = None
    created_at: float = 0.0


Announcement = AdapterAnnouncement | SchemaAnnouncement
ANNOUNCEMENT_KINDS = {"adapter": AdapterAnnouncement, "schema": SchemaAnnouncement}


class LatestStateRequest(Msg, tag="latest_state_request", kw_only=True):
    kinds: list[str] = msgspec.field(default_factory=list)  # subset of ("adapter", "schema"); empty = all


class LatestStateReply(Msg, tag="latest_state_reply", kw_only=True):
    request_id: str = ""
    adapter: AdapterAnnouncement | None = None
    schema: SchemaAnnouncement | None = None


# ---------------------------------------------------------------------------------------------------------
# reliable-stream control on the transition channel


class DataBatch(Msg, tag="data", kw_only=True):
    """The header of records ``first_seq .. first_seq + count - 1`` of a stream.

    A batch is one ZeroMQ message of two frames: this header, then the records as a block in the layout of
    :mod:`~automem_jax.transport.blocks` (each record a complete frame -- prefix + encoded
    :class:`TransitionMsg` or :class:`EpisodeSummaryMsg` -- behind its length and sequence number). That
    block is a slice of the actor's spool, sent without re-encoding or copying. Each record is validated on
    its own, so one bad record is dropped without losing its batch.
    """

    stream: str
    first_seq: int
    committed: int  # the sender's spool has deleted everything up to here
    count: int  # records in the block frame


class Ack(Msg, tag="ack", kw_only=True):
    """Learner -> actor: position of the learner in one stream."""

    stream: str
    received: int  # every record up to here has been processed (accepted or rejected for good)
    committed: int  # ... and is safe to delete from the sender's spool
    rewind: bool = False  # resend from received + 1 (a gap was seen, or the learner restarted)
    reply_to: str = ""  # msg_id of the Hello/Heartbeat this answers ("" for data acks and gap reports)


AnyMessage = (
    Hello
    | Heartbeat
    | TransitionMsg
    | EpisodeSummaryMsg
    | AdapterAnnouncement
    | SchemaAnnouncement
    | LatestStateRequest
    | LatestStateReply
    | DataBatch
    | Ack
)
ALL_TYPES: tuple[type[Msg], ...] = AnyMessage.__args__  # type: ignore[attr-defined]
DATA_TYPES = (TransitionMsg, EpisodeSummaryMsg)
DataUnion = TransitionMsg | EpisodeSummaryMsg


# ---------------------------------------------------------------------------------------------------------
# constructors


def transition_msg(t: Transition, sender: str | None = None) -> TransitionMsg:
    """Wrap a transition; its id is the message id, so a retry of the same transition is a duplicate."""
    return TransitionMsg(msg_id=t.id, sender=sender or t.actor_id, transition=t)


def summary_msg(s: EpisodeSummary, sender: str | None = None) -> EpisodeSummaryMsg:
    return EpisodeSummaryMsg(msg_id=f"summary/{s.actor_id}/{s.episode_id}", sender=sender or s.actor_id, summary=s)


def adapter_announcement(
    version: int, path: str, base_model: str, *, sender: str = "learner", created_at: float | None = None,
    sha256: str | None = None,
) -> AdapterAnnouncement:
    return AdapterAnnouncement(
        msg_id=f"adapter/{version}/{new_msg_id()[:8]}", sender=sender, version=version, path=path,
        base_model=base_model, created_at=time.time() if created_at is None else created_at, sha256=sha256,
    )


def schema_announcement(
    version: int, hash: str, document: dict[str, Any], *, parent_version: int | None = None,
    sender: str = "reviewer", created_at: float | None = None,
) -> SchemaAnnouncement:
    return SchemaAnnouncement(
        msg_id=f"schema/{version}/{new_msg_id()[:8]}", sender=sender, version=version, hash=hash,
        document=document, parent_version=parent_version, created_at=time.time() if created_at is None else created_at,
    )


def host_info() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname()}


# ---------------------------------------------------------------------------------------------------------
# counters and rate-limited logging


class Counters:
    """Named monotone counters, flattened to a dict for TensorBoard (the caller adds its own prefix)."""

    def __init__(self) -> None:
        self._c: Counter[str] = Counter()
        self._lock = threading.Lock()

    def inc(self, name: str, n: int | float = 1) -> None:
        with self._lock:
            self._c[name] += n

    def get(self, name: str) -> float:
        return self._c.get(name, 0)

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        with self._lock:
            return {prefix + k: v for k, v in sorted(self._c.items())}

    def dropped(self) -> dict[str, float]:
        """Drop counts by reason."""
        with self._lock:
            return {k[len("dropped/"):]: v for k, v in self._c.items() if k.startswith("dropped/")}

    def __repr__(self) -> str:
        return f"Counters({dict(self._c)})"


class RateLimitedLog:
    """At most one warning per key per ``interval_s``; the next one says how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval_s: float) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def warning(self, key: str, msg: str, *args: Any) -> None:
        self.log(logging.WARNING, key, msg, *args)

    def log(self, level: int, key: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._suppressed[key] += 1
            return
        self._last[key] = now
        n = self._suppressed.pop(key, 0)
        suffix = f" ({n} similar suppressed)" if n else ""
        self.logger.log(level, msg + suffix, *args)


def _preview(frame: bytes | memoryview, n: int = 24) -> str:
    return bytes(frame[:n]).hex()


# ---------------------------------------------------------------------------------------------------------
# codec


class Codec:
    """Encodes messages to frames and decodes frames to messages, validating and counting every rejection."""

    def __init__(self, max_message_bytes: int = 32 << 20, counters: Counters | None = None,
                 log_interval_s: float = 10.0, name: str = "transport") -> None:
        self.max_message_bytes = max_message_bytes
        self.counters = counters if counters is not None else Counters()
        self.name = name
        self.rlog = RateLimitedLog(log, log_interval_s)
        self._enc = msgspec.msgpack.Encoder()
        self._dec = msgspec.msgpack.Decoder(AnyMessage)
        self._dec_data = msgspec.msgpack.Decoder(DataUnion)

    # -- encode
    def encode(self, msg: Msg) -> bytes:
        return PREFIX + self._enc.encode(msg)

    def encode_into(self, msg: Msg, buf: bytearray) -> None:
        """Append the frame of ``msg`` to ``buf`` (no intermediate bytes object)."""
        buf += PREFIX
        self._enc.encode_into(msg, buf, -1)

    # -- decode
    def drop(self, reason: str, detail: str = "", frame: bytes | memoryview | None = None) -> None:
        self.counters.inc(f"dropped/{reason}")
        self.counters.inc("dropped")
        where = f"; starts {_preview(frame)}" if frame is not None and len(frame) else ""
        self.rlog.warning(reason, "%s: dropped a frame (%s): %s%s", self.name, reason, detail, where)

    def decode(self, frame: bytes | memoryview | Any, expect: tuple[type[Msg], ...] | None = None,
               max_bytes: int | None = None) -> Msg | None:
        """The message in ``frame``, or None (counted and logged) when the frame is not acceptable.

        ``max_bytes`` overrides ``max_message_bytes`` (a batch frame may hold many records).
        """
        try:
            buf = frame if isinstance(frame, (bytes, memoryview)) else memoryview(frame)
        except TypeError:
            self.drop("malformed", f"not a buffer: {type(frame).__name__}")
            return None
        n = len(buf)
        limit = self.max_message_bytes if max_bytes is None else max_bytes
        if n > limit:
            self.drop("oversized", f"{n} bytes > limit {limit}", buf)
            return None
        if n < PREFIX_LEN + 1 or buf[:3] != MAGIC:
            self.drop("bad_magic", f"{n} bytes without the protocol prefix", buf)
            return None
        if buf[3] != PROTOCOL_VERSION:
            self.drop("version", f"protocol version {buf[3]}, this process speaks {PROTOCOL_VERSION}", buf)
            return None
        try:
            msg = self._dec.decode(memoryview(buf)[PREFIX_LEN:])
        except msgspec.ValidationError as e:
            text = str(e)
            reason = "unknown_type" if ("`$.type`" in text or "field `type`" in text) else "invalid"
            self.drop(reason, text, buf)
            return None
        except (msgspec.DecodeError, RecursionError, MemoryError, ValueError) as e:
            self.drop("malformed", str(e) or type(e).__name__, buf)
            return None
        problem = check_semantics(msg)
        if problem:
            self.drop("invalid", f"{type(msg).__name__}: {problem}", buf)
            return None
        if expect is not None and not isinstance(msg, expect):
            self.drop("unexpected", f"{type(msg).__name__} is not accepted here", buf)
            return None
        return msg


    def decode_block(self, block: bytes | memoryview, first_seq: int, count: int,
                     skip: int = 0) -> list[TransitionMsg | EpisodeSummaryMsg | None]:
        """Records ``first_seq + skip .. first_seq + count - 1`` of a record block (layout in
        :mod:`~automem_jax.transport.blocks`), decoded and validated; ``None`` for each one that is dropped
        (counted like :meth:`decode`). Always ``count - skip`` items, so every position can be consumed: after a
        broken record header (wrong length or sequence number) the rest of the block is unusable and dropped.

        This is the learner's hot loop, so the common case is inlined: one unpack reads the record header and
        the frame's protocol prefix together.
        """
        view = block if isinstance(block, memoryview) else memoryview(block)
        end = len(view)
        limit = self.max_message_bytes
        decode = self._dec_data.decode
        unpack = _RECORD_START.unpack_from
        out: list[TransitionMsg | EpisodeSummaryMsg | None] = []
        off = 0
        for i in range(count):
            if off + _RECORD_START.size <= end:
                n, _check, seq, prefix = unpack(view, off)
            elif off + HDR_LEN <= end:
                (n, _check, seq), prefix = HEADER.unpack_from(view, off), -1
            else:
                n = seq = prefix = -1
            body = off + HDR_LEN
            nxt = body + n
            if seq != first_seq + i or n < 0 or nxt > end:
                self.drop("malformed", f"record {first_seq + i}: broken record header in a batch "
                                       f"({count - i} records from here dropped)")
                out.extend(None for _ in range(max(0, count - max(i, skip))))
                return out
            off = nxt
            if i < skip:
                continue
            msg = None
            if prefix == _PREFIX_INT and n <= limit:
                try:
                    msg = decode(view[body + PREFIX_LEN:nxt])
                except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, MemoryError, ValueError):
                    msg = None
                else:
                    if check_semantics(msg):  # its first test is the transition hot path
                        msg = None
            if msg is None:  # not the common case: classify and count the reason (or accept a rarer valid form)
                msg = self.decode(view[body:nxt], DATA_TYPES)  # type: ignore[assignment]
            out.append(msg)
        return out


MAX_POSITION = 2**62  # stream positions and versions above this are hostile or corrupt


def check_semantics(msg: Msg) -> str:
    """Checks beyond field types; an empty string means the message is fine."""
    if type(msg) is TransitionMsg:  # the hot path
        if msg.msg_id != msg.transition.id or not msg.sender:
            return f"msg_id {msg.msg_id!r} differs from transition id {msg.transition.id!r} (or no sender)"
        return ""
    if not msg.msg_id or not msg.sender:
        return "empty msg_id or sender"
    if isinstance(msg, DataBatch):
        if not 1 <= msg.first_seq <= MAX_POSITION or not 0 <= msg.committed < msg.first_seq or not msg.stream:
            return f"bad batch (first_seq={msg.first_seq}, committed={msg.committed}, stream={msg.stream!r})"
        if not 1 <= msg.count <= MAX_POSITION:
            return f"bad record count {msg.count}"
    elif isinstance(msg, Ack):
        if not 0 <= msg.committed <= msg.received <= MAX_POSITION:
            return f"bad ack positions (received={msg.received}, committed={msg.committed})"
    elif isinstance(msg, (AdapterAnnouncement, SchemaAnnouncement)):
        if not 0 <= msg.version <= MAX_POSITION:
            return f"version {msg.version} out of range"
    elif isinstance(msg, (Hello, Heartbeat)) and not (0 <= msg.sent_through <= MAX_POSITION
                                                       and 0 <= msg.committed <= MAX_POSITION):
        return "stream positions out of range"
    return ""
