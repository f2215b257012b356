"""The transition channel: actor -> learner, nothing lost, nothing duplicated, with backpressure.

Why DEALER/ROUTER and not PUSH/PULL
-----------------------------------
PUSH queues silently: it cannot tell the actor whether the learner got a message, so a learner restart
loses whatever sat in socket buffers, and the actor has no way to know what to resend. The requirement is
"nothing lost, nothing duplicated, backpressure", which needs a reply path, so the actor's socket is a
DEALER (connects, sends, receives acknowledgements) and the learner's is a ROUTER (binds, receives from
every actor, replies to each). PUSH/PULL would need a second socket pair for the replies and would still
deliver to whichever PULL is connected; ROUTER keeps each reply on the connection the data came from.

Protocol
--------
* The actor writes every record (an encoded :class:`TransitionMsg` or :class:`EpisodeSummaryMsg`) to its
  :class:`~automem_jax.transport.spool.Spool` first; the spool numbers records 1, 2, 3... in a stream whose
  id is persisted with the spool, so an actor restart continues the same stream.
* Records travel in order, in batches: one ZeroMQ message = a :class:`DataBatch` header frame and a frame
  holding up to ``max_batch`` records as a record block (:mod:`~automem_jax.transport.blocks`), a slice of
  the spool sent as is. Each record is still a complete, separately validated frame. At most
  ``max_inflight`` records and ``max_inflight_bytes`` are unacknowledged (the credit window).
  The DEALER has ``ZMQ_IMMEDIATE`` set, so while the learner is down a send fails at once instead of
  queueing: records simply stay in the spool (counted as ``spooled``).
* The learner keeps, per stream, the highest sequence number processed (``received``). A record at
  ``received + 1`` is processed (decoded, validated, de-duplicated by message id, delivered); one at or
  below is a duplicate (counted, not delivered); one further ahead means records were lost in a broken
  connection, so the learner answers with ``Ack(rewind=True)`` and the actor resends from
  ``received + 1`` (go-back-N). A record that fails validation is dropped *and* consumed, so a poison
  record cannot block a stream.
* Acks are cumulative and batched (one per stream per receive drain). ``committed`` in an ack tells the
  actor what it may delete from its spool: with ``ack_after="receive"`` that is everything received; with
  ``ack_after="checkpoint"`` it is only what the learner has checkpointed (``commit()``), so records
  survive a learner crash and are replayed to the restored learner.
* Hello (on every (re)connection) and Heartbeat (every ``heartbeat_interval_s``) carry the sender's
  position; the learner replies with an Ack that says where to resume. If no ack arrives for
  ``ack_timeout_s`` while records are in flight, the actor probes with a heartbeat and replays from the
  reply. A new learner instance therefore gets the backlog within one reconnect interval.
* The learner's de-duplication state (per-stream positions and a bounded window of recent message ids,
  which also catches the same transition arriving in another stream) is ``state_dict()`` /
  ``load_state_dict()``: the learner checkpoint stores it beside the replay buffer, so a restored learner
  does not accept again what it already has.

Security: see :mod:`automem_jax.transport.security` (loopback by default, CURVE for multi-machine runs).
"""

from __future__ import annotations

import collections
import contextlib
import gc
import itertools
import logging
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import zmq

import automem_jax
from automem_jax.records import EpisodeSummary, Transition
from automem_jax.transport.blocks import HDR_LEN, RecordBlock
from automem_jax.transport.config import TransportConfig
from automem_jax.transport.messages import (
    DATA_TYPES,
    PROTOCOL_VERSION,
    Ack,
    Codec,
    Counters,
    DataBatch,
    EpisodeSummaryMsg,
    Heartbeat,
    Hello,
    Msg,
    TransitionMsg,
    host_info,
    summary_msg,
    transition_msg,
)
from automem_jax.transport.security import ServerSocket, client_socket, connect_to
from automem_jax.transport.spool import Spool

log = logging.getLogger("automem.transport")

DataMsg = TransitionMsg | EpisodeSummaryMsg
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]+")
_MONITOR_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                   | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class MessageTooLargeError(ValueError):
    """A message encodes to more than ``max_message_bytes``; the learner would drop it, so it is refused."""


# ======================================================================================================
# actor side


class TransitionSender:
    """Actor side of the transition channel: durable, ordered, acknowledged, never blocks on the network.

    ``send()`` returns once the record is in the spool (on disk), and transmits it at once when the
    learner is reachable and the credit window allows. A background thread (``background=True``, the
    default) keeps acknowledgements, replays and heartbeats going while the actor is busy; without it,
    call :meth:`pump` regularly. All methods are thread-safe.

    ``send`` raises :class:`SpoolFullError` only when the spool stays full for ``send_timeout_s``, and
    :class:`MessageTooLargeError` for a record over ``max_message_bytes``.
    """

    def __init__(self, cfg: TransportConfig, sender_id: str, *, addr: str | None = None,
                 spool_dir: str | os.PathLike[str] | None = None, context: zmq.Context | None = None,
                 background: bool = True, role: str = "actor") -> None:
        if not sender_id or (spool_dir is None and (not _SAFE_ID.fullmatch(sender_id) or sender_id in (".", ".."))):
            raise ValueError(f"sender_id {sender_id!r} names the spool sub-directory: use letters, digits, '.', '_', "
                             "'-' (or pass spool_dir)")
        self.cfg = cfg
        self.sender_id = sender_id
        self.role = role
        self.addr = addr or cfg.transitions_addr
        self.counters = Counters()
        self.codec = Codec(cfg.max_message_bytes, self.counters, cfg.log_interval_s, name=f"sender {sender_id}")
        sp = cfg.spool
        self.spool = Spool(Path(spool_dir) if spool_dir is not None else Path(sp.dir) / sender_id,
                           max_bytes=sp.max_bytes, segment_bytes=sp.segment_bytes,
                           fsync_interval_s=sp.fsync_interval_s, cache_bytes=sp.cache_bytes,
                           meta_interval_s=sp.meta_interval_s)
        self.stream = self.spool.stream
        self.versions: dict[str, int | str] = {"package": automem_jax.__version__, "protocol": PROTOCOL_VERSION}
        self._lock = threading.RLock()
        self._closed = False
        self._started_at = time.time()
        self._info = host_info()
        try:
            self.sock = client_socket(cfg, zmq.DEALER, self.addr, "transitions", context, connect=False)
            self.sock.setsockopt(zmq.IMMEDIATE, 1)  # no connection -> send fails at once (records stay spooled)
            self.sock.setsockopt(zmq.RCVHWM, 0)  # acks are tiny; never drop one
            self.monitor = self.sock.get_monitor_socket(_MONITOR_EVENTS)
            connect_to(self.sock, self.addr)
        except BaseException:
            self.spool.close()
            raise
        # stream state
        self.next_seq = self.spool.committed + 1  # next record to transmit
        self.received = self.spool.committed  # learner's acknowledged position (as last heard)
        self._max_sent = self.spool.last_seq  # records above this were never transmitted by this process
        if self.spool.pending:
            log.info("sender %s: %d records from a previous run are spooled in %s; they will be replayed",
                     sender_id, self.spool.pending, self.spool.dir)
        self.connected = False
        self._last_progress = time.monotonic()
        self._last_heartbeat = 0.0
        self._last_rewind: tuple[int, float] = (-1, 0.0)
        self._need_hello = False
        self._inflight: collections.deque[tuple[int, int]] = collections.deque()  # (last seq of a batch, bytes)
        self._inflight_bytes = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        if background:
            self._thread = threading.Thread(target=self._run, name=f"transport-sender-{sender_id}", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------------------------------ public
    def send(self, msg: Msg | Transition | EpisodeSummary, timeout_s: float | None = None) -> int:
        """Spool one record (durably) and transmit it when possible; returns its sequence number."""
        return self.send_many([msg], timeout_s)

    def send_many(self, msgs: list[Any], timeout_s: float | None = None) -> int:
        """Spool several records with one disk write; returns the last sequence number."""
        block = RecordBlock.encode(msgs, self._encode_into)  # outside the lock: the network thread keeps going
        n = len(block)
        if not n:
            return self.spool.last_seq
        total = len(block.data)
        deadline = time.monotonic() + (self.cfg.send_timeout_s if timeout_s is None else timeout_s)
        while True:
            with self._lock:
                self._check_open()
                if self.spool.fits(total, 0) or time.monotonic() >= deadline:
                    seq = self.spool.append_block(block)  # raises SpoolFullError with the details when full
                    self.counters.inc("enqueued", n)
                    self.counters.inc("bytes_enqueued", block.payload_bytes)
                    if self.next_seq - 1 - self.received > self.cfg.max_inflight // 2:
                        self._drain_acks(0.0)
                    self._transmit()
                    waiting = seq - max(self.next_seq, seq - n + 1) + 1
                    if waiting > 0:  # not all could go out now: they wait in the spool
                        self.counters.inc("spooled", waiting)
                    return seq
                self._pump_locked()
            time.sleep(min(0.05, self.cfg.pump_interval_s * 4))

    def send_transition(self, t: Transition) -> int:
        return self.send(t)

    def send_summary(self, s: EpisodeSummary) -> int:
        return self.send(s)

    def set_versions(self, **versions: int | str) -> None:
        """Versions reported in heartbeats (e.g. ``adapter=3, schema=2``)."""
        with self._lock:
            self.versions.update(versions)

    def pump(self, timeout_s: float = 0.0) -> None:
        """Process acknowledgements, replays, timeouts and heartbeats (the background thread does this)."""
        with self._lock:
            if self._closed:
                return
            self._pump_locked(timeout_s)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until the learner has committed every spooled record; True when it has."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                if self.spool.pending == 0:
                    return True
                self._pump_locked(0.0 if self._thread else 0.01)
            if time.monotonic() >= deadline:
                return False
            if self._thread:
                time.sleep(self.cfg.pump_interval_s)

    @property
    def pending(self) -> int:
        """Records spooled but not yet committed by the learner."""
        return self.spool.pending

    def stats(self) -> dict[str, float]:
        """Counters and gauges, flat, for TensorBoard."""
        with self._lock:
            d = self.counters.as_dict()
            d.update(pending=self.spool.pending, spool_bytes=self.spool.bytes, inflight=self.next_seq - 1 - self.received,
                     connected=float(self.connected), committed_seq=self.spool.committed, last_seq=self.spool.last_seq)
            return d

    def close(self, flush_timeout_s: float = 0.0) -> None:
        """Stop; with ``flush_timeout_s`` > 0 first wait for acknowledgements. Unacked records stay spooled."""
        if flush_timeout_s > 0 and not self._closed:
            self.flush(flush_timeout_s)
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(zmq.ZMQError):
                self.sock.disable_monitor()
            self.monitor.close(linger=0)
            self.sock.close(linger=0)
            self.spool.close()

    def __enter__(self) -> TransitionSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------- internals
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"sender {self.sender_id} is closed")

    def _encode_into(self, m: Any, buf: bytearray) -> None:
        """Append the record's frame to ``buf`` (a block being built); raises before anything is spooled."""
        if isinstance(m, Transition):
            m = transition_msg(m, self.sender_id)
        elif isinstance(m, EpisodeSummary):
            m = summary_msg(m, self.sender_id)
        elif not isinstance(m, DATA_TYPES):
            raise TypeError(f"the transition channel carries Transition/EpisodeSummary messages, not {type(m).__name__}")
        start = len(buf)
        self.codec.encode_into(m, buf)
        size = len(buf) - start
        if size > self.cfg.max_message_bytes:
            raise MessageTooLargeError(
                f"{type(m).__name__} {m.msg_id!r} encodes to {size} bytes > transport.max_message_bytes="
                f"{self.cfg.max_message_bytes}; the learner would drop it")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.pump()
            except Exception:  # keep the channel alive; the error is visible in the log
                log.exception("sender %s: background pump failed", self.sender_id)
            self._stop.wait(self.cfg.pump_interval_s)

    def _pump_locked(self, timeout_s: float = 0.0) -> None:
        self._drain_monitor()
        self._drain_acks(timeout_s)
        now = time.monotonic()
        if self.next_seq - 1 > self.received and now - self._last_progress > self.cfg.ack_timeout_s:
            # records in flight and silence: the learner died or the connection broke. Probe; its reply rewinds.
            self.counters.inc("ack_timeouts")
            if self.connected:
                log.warning("sender %s: no acknowledgement for %.1f s with %d records in flight; probing %s",
                            self.sender_id, now - self._last_progress, self.next_seq - 1 - self.received, self.addr)
            self.connected = False
            self._last_progress = now
            self._send_status(Hello)
        if now - self._last_heartbeat >= self.cfg.heartbeat_interval_s:
            self._send_status(Heartbeat)
        self._transmit()

    def _drain_monitor(self) -> None:
        from zmq.utils.monitor import recv_monitor_message

        while self.monitor.poll(0):
            try:
                ev = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.ZMQError:
                break
            event = ev["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.counters.inc("connects")
                self._need_hello = True  # its reply says where to resume
            elif event == zmq.EVENT_DISCONNECTED:
                self.counters.inc("disconnects")
                if self.connected:
                    log.warning("sender %s: disconnected from %s; spooling", self.sender_id, self.addr)
                self.connected = False
            else:
                self.counters.inc("handshake_failures")
                why = ("authentication refused (is this actor's public key in the server's curve.authorized_keys_dir?)"
                       if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH else
                       "protocol mismatch (CURVE on one side only, or a different program on that port?)")
                self.codec.rlog.log(logging.ERROR, "handshake", "sender %s: handshake with %s failed: %s",
                                    self.sender_id, self.addr, why)
        if self._need_hello and self._send_status(Hello):
            self._need_hello = False

    def _send_status(self, kind: type[Hello] | type[Heartbeat]) -> bool:
        self._last_heartbeat = time.monotonic()
        base = dict(msg_id=f"{self.sender_id}/{kind.__name__.lower()}/{time.time_ns()}", sender=self.sender_id,
                    pid=self._info["pid"], host=self._info["host"], versions=dict(self.versions),
                    counters={k: float(v) for k, v in self.counters.as_dict().items()}, stream=self.stream,
                    sent_through=self.next_seq - 1, committed=self.spool.committed)
        msg = (Hello(**base, role=self.role, started_at=self._started_at) if kind is Hello
               else Heartbeat(**base, pending=self.spool.pending))
        try:
            self.sock.send(self.codec.encode(msg), zmq.NOBLOCK)
        except zmq.Again:
            return False
        self.counters.inc("heartbeats_sent")
        return True

    def _drain_acks(self, timeout_s: float) -> None:
        if not self.sock.poll(int(timeout_s * 1000)):
            return
        while True:
            try:
                parts = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(parts) != 1:
                self.codec.drop("bad_envelope", f"{len(parts)} frames from the learner")
                continue
            ack = self.codec.decode(parts[0], (Ack,))
            if ack is None:
                continue
            assert isinstance(ack, Ack)
            if ack.stream != self.stream:
                self.codec.drop("unexpected", f"ack for stream {ack.stream!r}, ours is {self.stream!r}")
                continue
            self._on_ack(ack)

    def _on_ack(self, ack: Ack) -> None:
        self.counters.inc("acks_received")
        now = time.monotonic()
        if not self.connected:
            log.info("sender %s: learner at %s acknowledged (received=%d); %d records pending", self.sender_id,
                     self.addr, ack.received, self.spool.pending)
        self.connected = True
        received = min(ack.received, self.spool.last_seq)
        if received > self.received or ack.rewind:
            self._last_progress = now
        if ack.rewind:
            # The learner has everything up to `received` and nothing after: resend from there. A gap report
            # (no reply_to) repeats while stale batches drain, so the same position is rewound to only once.
            repeat = not ack.reply_to and self._last_rewind[0] == received and (
                now - self._last_rewind[1] < self.cfg.ack_timeout_s / 2)
            target = max(received, self.spool.committed) + 1
            if target < self.next_seq and not repeat:
                self.counters.inc("rewinds")
                self._last_rewind = (received, now)
                self.next_seq = target
                self._inflight.clear()  # what is resent is counted again
                self._inflight_bytes = 0
            self.received = received
        elif received > self.received:
            self.received = received
        if self.next_seq <= self.received:
            self.next_seq = self.received + 1
        n = self.spool.commit(min(ack.committed, received))
        if n:
            self.counters.inc("acked", n)

    def _trim_inflight(self) -> None:
        q = self._inflight
        while q and q[0][0] <= self.received:
            self._inflight_bytes -= q.popleft()[1]

    def _transmit(self) -> None:
        cfg = self.cfg
        while self.next_seq <= self.spool.last_seq:
            self._trim_inflight()
            room = cfg.max_inflight - (self.next_seq - 1 - self.received)
            room_bytes = cfg.max_inflight_bytes - self._inflight_bytes
            if room <= 0 or room_bytes <= 0:
                return
            if not self.sock.getsockopt(zmq.EVENTS) & zmq.POLLOUT:  # no connection, or the learner's queue is full
                self.counters.inc("send_blocked")
                return
            block, n = self.spool.read_block(self.next_seq, min(room, cfg.max_batch),
                                             min(room_bytes, cfg.max_batch_bytes))
            header = DataBatch(msg_id=f"{self.stream}/{self.next_seq}+{n}", sender=self.sender_id,
                               stream=self.stream, first_seq=self.next_seq, committed=self.spool.committed, count=n)
            try:
                # zero-copy for large blocks: spool blocks are never modified once appended
                self.sock.send_multipart([self.codec.encode(header), block], zmq.NOBLOCK, copy=False)
            except zmq.Again:  # no connection (IMMEDIATE) or the learner's queue is full: backpressure
                self.counters.inc("send_blocked")
                return
            if self.next_seq - 1 == self.received:  # nothing was in flight: the ack clock starts now
                self._last_progress = time.monotonic()
            self.next_seq += n
            nb = len(block) - HDR_LEN * n
            self._inflight.append((self.next_seq - 1, nb))
            self._inflight_bytes += nb
            new = max(0, self.next_seq - 1 - self._max_sent)
            self.counters.inc("sent", new)
            self.counters.inc("replayed", n - new)
            self.counters.inc("bytes_sent", nb)
            self.counters.inc("batches_sent")
            self._max_sent = max(self._max_sent, self.next_seq - 1)


# ======================================================================================================
# learner side


@dataclass
class StreamState:
    stream: str
    sender: str
    hw: int = 0  # received: every record <= hw has been processed
    committed: int = 0
    identity: bytes = b""  # ROUTER routing id of the connection last heard on
    acked: int = 0  # hw when the last ack was sent
    last_seen: float = 0.0
    last_nack: tuple[int, float] = (-1, 0.0)


@dataclass
class PeerInfo:
    sender: str
    role: str = ""
    pid: int = 0
    host: str = ""
    versions: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    stream: str = ""
    pending: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0  # wall clock
    hellos: int = 0
    heartbeats: int = 0


class TransitionReceiver:
    """Learner side of the transition channel: a ROUTER that validates, de-duplicates and acknowledges.

    Call :meth:`recv` from one thread; it returns the new :class:`TransitionMsg` / :class:`EpisodeSummaryMsg`
    objects in stream order per actor (``msg.transition`` / ``msg.summary`` hold the records). With
    ``cfg.ack_after == "checkpoint"``, call :meth:`commit` with the :meth:`state_dict` that was saved in a
    checkpoint once that checkpoint is durable; until then actors keep the records in their spools.
    """

    def __init__(self, cfg: TransportConfig, *, addr: str | None = None, context: zmq.Context | None = None,
                 name: str = "learner") -> None:
        self.cfg = cfg
        self.name = name
        self.counters = Counters()
        self.codec = Codec(cfg.max_message_bytes, self.counters, cfg.log_interval_s, name=f"{name} receiver")
        self._server = ServerSocket(cfg, zmq.ROUTER, addr or cfg.transitions_addr, context=context)
        self.sock = self._server.sock
        self.endpoint = self._server.endpoint
        self.streams: dict[str, StreamState] = {}
        self.peers: dict[str, PeerInfo] = {}
        self._recent: set[str] = set()
        self._recent_order: collections.deque[str] = collections.deque()
        self._checkpoint_mode = cfg.ack_after == "checkpoint"
        self._closed = False
        self.max_drain = 10_000  # ZeroMQ messages per recv() call, so one call stays short

    # ------------------------------------------------------------------------------------------ public
    def recv(self, timeout_s: float = 0.0, max_messages: int = 20_000) -> list[DataMsg]:
        """New data messages; waits up to ``timeout_s`` for the first, then drains what is queued."""
        out: list[DataMsg] = []
        touched: dict[str, StreamState] = {}
        if not self.sock.poll(int(max(0.0, timeout_s) * 1000)):
            return out
        # Decoding allocates ~10 container objects per transition, and the learner keeps them: with automatic
        # collection on, each drain would trigger dozens of collections that walk the whole (large) buffer.
        # Pausing it for the drain makes that one young-generation collection afterwards.
        pause = self.cfg.pause_gc_while_decoding and gc.isenabled()
        if pause:
            gc.disable()
        try:
            for _ in range(self.max_drain):
                try:
                    frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)  # no copy of large batches
                except zmq.Again:
                    break
                self._handle([frames[0].bytes, *(f.buffer for f in frames[1:])], out, touched)
                if len(out) >= max_messages:
                    break
        finally:
            if pause:
                gc.enable()
        for st in touched.values():
            self._send_ack(st)
        return out

    def commit(self, state: dict[str, Any] | None = None) -> None:
        """Tell actors they may delete what ``state`` (a saved ``state_dict()``; default: now) covers."""
        positions = {s: v["hw"] for s, v in (state or self.state_dict())["streams"].items()}
        for sid, hw in positions.items():
            st = self.streams.get(sid)
            if st is not None and hw > st.committed:
                st.committed = min(hw, st.hw)
                self._send_ack(st)

    def state_dict(self) -> dict[str, Any]:
        """De-duplication state for the learner checkpoint (JSON-compatible)."""
        return {
            "format": 1,
            "streams": {s: {"hw": st.hw, "sender": st.sender} for s, st in self.streams.items()},
            # per-stream positions are the real guard; recent ids only catch a transition re-sent in a new
            # stream (an actor whose spool was wiped), so the checkpoint keeps just the newest of them
            "recent_ids": list(itertools.islice(reversed(self._recent_order), self.cfg.dedup_checkpoint_ids))[::-1],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != 1:
            raise ValueError(f"unsupported receiver state format {state.get('format')!r}")
        self.streams = {}
        for sid, v in state["streams"].items():
            hw = int(v["hw"])
            self.streams[sid] = StreamState(stream=sid, sender=str(v.get("sender", "")), hw=hw, committed=hw)
        self._recent_order = collections.deque(state.get("recent_ids", [])[-self.cfg.dedup_window:])
        self._recent = set(self._recent_order)

    def stats(self) -> dict[str, float]:
        d = self.counters.as_dict()
        now = time.time()
        d["peers"] = len(self.peers)
        d["peers_silent"] = sum(1 for p in self.peers.values() if now - p.last_seen > self.cfg.peer_timeout_s)
        d["streams"] = len(self.streams)
        return d

    def peer_table(self) -> dict[str, dict[str, Any]]:
        """Per-actor liveness and reported counters (from Hello/Heartbeat), plus ``silent_s``."""
        now = time.time()
        return {k: {**asdict(p), "silent_s": now - p.last_seen} for k, p in self.peers.items()}

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._server.close()

    def __enter__(self) -> TransitionReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------- internals
    def _handle(self, parts: list[Any], out: list[DataMsg], touched: dict[str, StreamState]) -> None:
        """``parts``: routing id (bytes), then the message frames (bytes or memoryviews)."""
        self.counters.inc("frames_received")
        identity = parts[0]
        body = parts[1:]
        if len(body) >= 2 and len(body[0]) == 0:  # a REQ-style envelope; tolerate it
            body = body[1:]
        if not 1 <= len(body) <= 2:
            self.codec.drop("bad_envelope", f"{len(body)} message frames (expected 1, or 2 for a data batch)")
            return
        self.counters.inc("bytes_received", sum(len(b) for b in body))
        msg = self.codec.decode(body[0], (DataBatch, Hello, Heartbeat))
        if msg is None:
            return
        if isinstance(msg, DataBatch):
            if len(body) != 2:
                self.codec.drop("bad_envelope", "a data batch header without its record frame")
            elif len(body[1]) > self.cfg.batch_frame_limit:
                self.codec.drop("oversized", f"record frame of {len(body[1])} bytes > {self.cfg.batch_frame_limit}")
            elif msg.count * HDR_LEN > len(body[1]):
                self.codec.drop("invalid", f"a batch of {msg.count} records in {len(body[1])} bytes")
            else:
                self._on_batch(identity, msg, body[1], out, touched)
        elif len(body) != 1:
            self.codec.drop("bad_envelope", f"{type(msg).__name__} with {len(body)} frames (expected 1)")
        else:
            self._on_status(identity, msg)

    def _stream(self, sid: str, sender: str, committed: int, identity: bytes) -> StreamState:
        st = self.streams.get(sid)
        if st is None:
            if len(self.streams) >= self.cfg.max_streams:
                oldest = min(self.streams.values(), key=lambda s: s.last_seen)
                victim = next(k for k, v in self.streams.items() if v is oldest)
                self.codec.rlog.warning("streams", "%s: more than %d streams; forgetting the least recent (%s)",
                                        self.name, self.cfg.max_streams, victim)
                del self.streams[victim]
            st = StreamState(stream=sid, sender=sender, hw=committed, committed=committed)
            self.streams[sid] = st
            self.counters.inc("streams_opened")
        elif committed > st.hw:
            # The sender deleted records this learner never processed: the learner restarted from an older
            # checkpoint with ack_after="receive". They cannot be recovered; count them and move on.
            lost = committed - st.hw
            self.counters.inc("unrecoverable", lost)
            self.codec.rlog.log(logging.ERROR, "unrecoverable",
                                "%s: stream %s of %s resumes at %d but this learner only has up to %d: %d records "
                                "were acknowledged to a previous learner instance after its last checkpoint (use "
                                "ack_after=checkpoint to make restores lossless)", self.name, sid, sender, committed,
                                st.hw, lost)
            st.hw = committed
            st.committed = max(st.committed, committed)
        st.identity = identity
        st.last_seen = time.time()
        return st

    def _on_status(self, identity: bytes, msg: Hello | Heartbeat) -> None:
        now = time.time()
        p = self.peers.get(msg.sender)
        if p is None:
            if len(self.peers) >= self.cfg.max_streams:  # bounded, whatever peers claim to be
                del self.peers[min(self.peers, key=lambda k: self.peers[k].last_seen)]
            p = self.peers[msg.sender] = PeerInfo(sender=msg.sender, first_seen=now)
            self.codec.rlog.log(logging.INFO, "new_peer", "%s: new peer %s (pid %d on %s)", self.name, msg.sender,
                                msg.pid, msg.host)
        p.pid, p.host, p.versions, p.counters, p.stream = msg.pid, msg.host, msg.versions, msg.counters, msg.stream
        p.last_seen = now
        if isinstance(msg, Hello):
            p.role = msg.role
            p.hellos += 1
            self.counters.inc("hellos")
        else:
            p.pending = msg.pending
            p.heartbeats += 1
            self.counters.inc("heartbeats")
        if msg.stream:
            st = self._stream(msg.stream, msg.sender, msg.committed, identity)
            self._send_ack(st, rewind=st.hw < msg.sent_through, reply_to=msg.msg_id)

    def _on_batch(self, identity: bytes, batch: DataBatch, block: Any, out: list[DataMsg],
                  touched: dict[str, StreamState]) -> None:
        c = self.counters
        count = batch.count
        st = self._stream(batch.stream, batch.sender, batch.committed, identity)
        p = self.peers.get(batch.sender)
        if p is not None:
            p.last_seen = st.last_seen
        seq = batch.first_seq
        if seq > st.hw + 1:
            # records between were lost (a connection broke): ask for them again, once per position
            c.inc("gaps")
            c.inc("out_of_order", count)
            now = time.monotonic()
            if st.last_nack[0] != st.hw or now - st.last_nack[1] > self.cfg.ack_timeout_s / 2:
                st.last_nack = (st.hw, now)
                self._send_ack(st, rewind=True)
            return
        touched[batch.stream] = st
        skip = max(0, st.hw + 1 - seq)
        if skip:
            c.inc("duplicates", min(skip, count))
        msgs = self.codec.decode_block(block, seq, count, skip)
        st.hw += len(msgs)
        recent = self._recent
        order = self._recent_order
        window = self.cfg.dedup_window
        delivered = dups = 0
        for msg in msgs:
            if msg is None:
                continue
            mid = msg.msg_id
            if mid in recent:
                dups += 1
                continue
            recent.add(mid)
            order.append(mid)
            out.append(msg)
            delivered += 1
        while len(order) > window:
            recent.discard(order.popleft())
        c.inc("processed", len(msgs))
        c.inc("delivered", delivered)
        if dups:
            c.inc("duplicates", dups)
        if not self._checkpoint_mode:
            st.committed = st.hw
        if st.hw - st.acked >= self.cfg.ack_every:  # keep the sender's window open during a long drain
            self._send_ack(st)

    def _send_ack(self, st: StreamState, rewind: bool = False, reply_to: str = "") -> None:
        if not self._checkpoint_mode:
            st.committed = st.hw
        ack = Ack(msg_id=f"ack/{st.stream}/{st.hw}/{time.monotonic_ns()}", sender=self.name, stream=st.stream,
                  received=st.hw, committed=min(st.committed, st.hw), rewind=rewind, reply_to=reply_to)
        st.acked = st.hw
        try:
            self.sock.send_multipart([st.identity, self.codec.encode(ack)], zmq.NOBLOCK)
            self.counters.inc("acks_sent")
        except zmq.ZMQError:
            self.counters.inc("acks_unroutable")
