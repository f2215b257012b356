"""Configuration of the ZeroMQ channels: addresses, queue limits, timeouts, the actor spool and CURVE keys.

One :class:`TransportConfig` is shared by every process of a run (the ``transport:`` section of a preset).
Each process uses the parts it needs: an actor connects to the learner's transition endpoint and subscribes
to the adapter and schema announcements; the learner binds the transition endpoint and publishes adapters;
the reviewer publishes schemas.

Addresses are what *clients connect to*. A server binds the same port on ``bind_host``, which is
``127.0.0.1`` by default, so nothing is reachable from another machine unless configured. For a
multi-machine run set ``bind_host: 0.0.0.0`` on the servers, point the addresses at the server host names,
and turn on CURVE (``curve.enabled: true``); binding a non-loopback interface without CURVE is refused
unless ``allow_insecure_remote: true``. A port of ``0`` binds an ephemeral port (tests); the bound endpoint
is then read from the server object's ``endpoint``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from automem_jax.config import Config

MiB = 1 << 20


class SpoolConfig(Config):
    """The actor's on-disk spool: an append-only log of encoded frames kept until the learner acknowledges them."""

    dir: str = "runs/spool"  # one sub-directory per sender id is created below it
    max_bytes: int = Field(1024 * MiB, gt=0)  # send() raises SpoolFullError past this (after send_timeout_s)
    segment_bytes: int = Field(16 * MiB, gt=0)  # a segment file is closed past this size (then fsync'd off-thread)
    fsync_interval_s: float = Field(1.0, ge=0)  # background fsync period; 0 = fsync each append before it returns
    cache_bytes: int = Field(64 * MiB, ge=0)  # recent records kept in memory so sends and replays avoid disk reads
    meta_interval_s: float = Field(0.5, ge=0)  # how often the acknowledged position is persisted


class CurveConfig(Config):
    """ZeroMQ CURVE authentication and encryption (key files from ``automem keys``)."""

    enabled: bool = False
    # This process's certificate (NAME.key_secret as written by `automem keys`): the server key for the
    # sockets it binds and the client key for the sockets it connects.
    secret_key_file: str | None = None
    # Public certificate (NAME.key) of the server(s) this process connects to ...
    server_public_key_file: str | None = None
    # ... or one per channel: keys "transitions", "adapters", "schemas" (falls back to the file above).
    server_public_key_files: dict[str, str] = Field(default_factory=dict)
    # Directory of client public certificates (*.key) allowed to connect to this process's servers.
    authorized_keys_dir: str | None = None


class TransportConfig(Config):
    bind_host: str = "127.0.0.1"
    allow_insecure_remote: bool = False  # permit binding a non-loopback host without CURVE

    transitions_addr: str = "tcp://127.0.0.1:5701"  # learner ROUTER <- actor DEALERs (transitions, summaries, heartbeats)
    adapters_addr: str = "tcp://127.0.0.1:5702"  # learner PUB -> actors (adapter announcements)
    adapters_state_addr: str = "tcp://127.0.0.1:5703"  # learner latest-state server
    schemas_addr: str = "tcp://127.0.0.1:5704"  # reviewer PUB -> actors (schema announcements)
    schemas_state_addr: str = "tcp://127.0.0.1:5705"  # reviewer latest-state server

    sndhwm: int = Field(1000, ge=0)  # ZeroMQ high-water marks, in ZeroMQ messages (one batch is one message; 0 = none)
    rcvhwm: int = Field(1000, ge=0)
    # The credit window: records sent but not yet acknowledged as received, by count and by bytes.
    max_inflight: int = Field(65536, gt=0)
    max_inflight_bytes: int = Field(64 * MiB, gt=0)
    ack_every: int = Field(2048, gt=0)  # the learner acknowledges a stream at least every this many records
    max_batch: int = Field(128, gt=0)  # records per ZeroMQ message on the transition channel
    max_batch_bytes: int = Field(4 * MiB, gt=0)  # a single larger record still travels, alone
    max_message_bytes: int = Field(32 * MiB, gt=0)  # larger frames are dropped before decoding (and refused at send)
    socket_max_msgsize: int = Field(64 * MiB, gt=0)  # libzmq ZMQ_MAXMSGSIZE: a peer sending more is disconnected

    ack_timeout_s: float = Field(5.0, gt=0)  # no acknowledgement for this long with data in flight: probe and replay
    heartbeat_interval_s: float = Field(2.0, gt=0)
    peer_timeout_s: float = Field(15.0, gt=0)  # the learner marks an actor silent after this long
    send_timeout_s: float = Field(30.0, ge=0)  # send() waits this long for spool space before raising
    request_timeout_s: float = Field(5.0, gt=0)  # fetch_latest()
    republish_interval_s: float = Field(5.0, gt=0)  # publishers repeat the latest announcement this often
    reconnect_ivl_ms: int = Field(100, gt=0)
    reconnect_ivl_max_ms: int = Field(2000, ge=0)
    pump_interval_s: float = Field(0.005, gt=0)  # the sender's background thread period

    ack_after: Literal["receive", "checkpoint"] = "receive"  # "checkpoint": actors keep records until commit()
    # TransitionReceiver.recv() pauses Python's automatic garbage collection while it decodes a drain (and
    # restores it), so the learner's large buffer of records is not re-scanned dozens of times per drain.
    pause_gc_while_decoding: bool = True
    dedup_window: int = Field(200_000, gt=0)  # message ids remembered by the learner across streams
    dedup_checkpoint_ids: int = Field(20_000, ge=0)  # of those, the newest kept in state_dict() (checkpoint size)
    max_streams: int = Field(10_000, gt=0)
    log_interval_s: float = Field(10.0, ge=0)  # rate limit of warnings about dropped frames, per reason

    spool: SpoolConfig = Field(default_factory=SpoolConfig)
    curve: CurveConfig = Field(default_factory=CurveConfig)

    @property
    def batch_frame_limit(self) -> int:
        """Largest acceptable transition-channel frame: a batch of records, or one record of the maximum size."""
        return max(self.max_message_bytes, self.max_batch_bytes) + MiB

    @model_validator(mode="after")
    def _check(self) -> TransportConfig:
        if self.socket_max_msgsize < self.batch_frame_limit:
            raise ValueError("socket_max_msgsize must be >= max(max_message_bytes, max_batch_bytes) + 1 MiB")
        return self
