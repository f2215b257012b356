"""Fuzzing every receiving socket with 10,000 random and mutated frames: it stays up, counts them as dropped,
and a valid message afterwards still arrives."""

from __future__ import annotations

import random
import time
from pathlib import Path

import msgspec
import zmq
from transport_helpers import LearnerLoop, fast_config, wait_until

from automem_jax.transport import (
    AnnouncementSubscriber,
    Announcer,
    LatestStateServer,
    TransitionSender,
    adapter_announcement,
    fetch_latest,
    schema_announcement,
)
from automem_jax.transport import messages as m
from automem_jax.transport.blocks import RecordBlock
from automem_jax.transport.reliable import TransitionReceiver
from automem_jax.transport.samples import sample_summary, sample_transition

N = 10_000
MAX = 64 * 1024


def _cfg():
    return fast_config(max_message_bytes=MAX, max_batch_bytes=MAX, socket_max_msgsize=4 << 20, sndhwm=100_000,
                       rcvhwm=100_000)


def _random_msgpack(rng: random.Random, depth: int = 0) -> object:
    r = rng.random()
    if depth > 3 or r < 0.3:
        return rng.choice([rng.randrange(-(2**63), 2**63), rng.random(), "x" * rng.randrange(20), None, True,
                           b"\x00\xff", -1, 2**64 - 1])
    if r < 0.6:
        return [_random_msgpack(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["type", "msg_id", "sender", "stream", "first_seq", "count", "version", "kinds", "x"]):
            _random_msgpack(rng, depth + 1) for _ in range(rng.randrange(6))}


def _mutate(rng: random.Random, frame: bytes) -> bytes:
    b = bytearray(frame)
    op = rng.randrange(7)
    if op == 0 and b:  # flip bytes
        for _ in range(rng.randrange(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif op == 1:  # truncate
        b = b[: rng.randrange(len(b) + 1)]
    elif op == 2:  # append garbage
        b += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 50)))
    elif op == 3 and len(b) > 3:  # another protocol version
        b[3] = rng.choice([0, 2, 255])
    elif op == 4:  # splice a random chunk in
        i = rng.randrange(len(b) + 1)
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 30)))
    elif op == 5:  # a valid prefix with random msgpack
        b = bytearray(m.PREFIX + msgspec.msgpack.encode(_random_msgpack(rng)))
    else:  # valid msgpack, a random known tag, random fields
        d = msgspec.msgpack.decode(frame[4:]) if frame[:4] == m.PREFIX else {}
        if isinstance(d, dict):
            d["type"] = rng.choice([t.__struct_config__.tag for t in m.ALL_TYPES] + ["nope", 7])
            if d and rng.random() < 0.5:
                d[rng.choice(list(d))] = _random_msgpack(rng)
        b = bytearray(m.PREFIX + msgspec.msgpack.encode(d))
    return bytes(b)


def fuzz_messages(rng: random.Random, valid: list[list[bytes]], n: int, limit: int = MAX) -> list[list[bytes]]:
    """n multipart messages: random bytes, random part counts, mutations of valid messages, and frames over
    ``limit`` (the socket's acceptable size) but under the hard cap, where libzmq would disconnect."""
    out: list[list[bytes]] = []
    for i in range(n):
        r = rng.random()
        if i % 997 == 0:
            out.append([m.PREFIX + b"\x00" * (limit + rng.randrange(1, 1000))])
        elif r < 0.25:
            out.append([bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))])
        elif r < 0.35:
            out.append([bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40))) for _ in range(rng.randrange(1, 6))])
        else:
            msg = [bytes(p) for p in rng.choice(valid)]
            k = rng.randrange(len(msg))
            msg[k] = _mutate(rng, msg[k])
            if rng.random() < 0.1:
                msg = msg[: rng.randrange(1, len(msg) + 1)] if rng.random() < 0.5 else msg + [msg[-1]]
            out.append(msg)
    return out


def _codec() -> m.Codec:
    return m.Codec()


def _batch(c: m.Codec, stream: str, frames: list[bytes]) -> list[bytes]:
    """A data batch as the sender puts it on the wire: header frame, record-block frame."""
    block = RecordBlock.from_frames(frames)
    block.number(1)
    header = c.encode(m.DataBatch(msg_id="b", sender="fuzzer", stream=stream, first_seq=1, committed=0,
                                  count=len(frames)))
    return [header, bytes(block.data)]


def _valid_transition_channel() -> list[list[bytes]]:
    c = _codec()
    recs = [c.encode(m.transition_msg(sample_transition(i, "fuzzer"))) for i in range(3)]
    summ = c.encode(m.summary_msg(sample_summary(1, "fuzzer")))
    batch = _batch(c, "fuzz-stream", recs)
    one = _batch(c, "fuzz-stream", [summ])
    hello = c.encode(m.Hello(msg_id="h", sender="fuzzer", stream="fuzz-stream", sent_through=3))
    hb = c.encode(m.Heartbeat(msg_id="h", sender="fuzzer", stream="fuzz-stream", sent_through=3))
    ack = c.encode(m.Ack(msg_id="a", sender="l", stream="fuzz-stream", received=1, committed=1))
    return [batch, one, [hello], [hb], [ack], [recs[0]], batch + batch, [batch[0]], [hello, batch[1]]]


def _mutated_batches(rng: random.Random, n: int) -> list[list[bytes]]:
    """Well-formed batches whose records are mutated: the batch is fine, the records inside are not."""
    c = _codec()
    good = [c.encode(m.transition_msg(sample_transition(i, "fuzzer"))) for i in range(4)]
    out = []
    for i in range(n):
        recs = [_mutate(rng, g) if rng.random() < 0.8 else g for g in good]
        out.append(_batch(c, f"fuzz-{i}", recs))
    return out


def test_fuzz_transition_receiver(tmp_path: Path) -> None:
    cfg = _cfg()
    rng = random.Random(1)
    with TransitionReceiver(cfg) as rx:
        loop = LearnerLoop(rx)
        with TransitionSender(cfg, "honest", addr=rx.endpoint, spool_dir=tmp_path / "s") as tx:
            tx.send(sample_transition(0, "honest"))
            assert tx.flush(5)
            fz = zmq.Context.instance().socket(zmq.DEALER)
            fz.setsockopt(zmq.LINGER, 0)
            fz.setsockopt(zmq.SNDHWM, 100_000)
            fz.connect(rx.endpoint)
            msgs = fuzz_messages(rng, _valid_transition_channel(), N - 500, cfg.batch_frame_limit)
            msgs += _mutated_batches(rng, 500)
            rng.shuffle(msgs)
            t0 = time.monotonic()
            for parts in msgs:
                fz.send_multipart(parts)
            assert wait_until(lambda: rx.counters.get("frames_received") >= N + 1, 60), rx.stats()
            fuzz_s = time.monotonic() - t0
            tx.send(sample_transition(1, "honest"))
            assert tx.flush(5)
            fz.close(linger=0)
        loop.stop()
    st = rx.stats()
    honest = [x.msg_id for x in loop.got if x.sender == "honest"]
    assert honest == [sample_transition(0, "honest").id, sample_transition(1, "honest").id]
    dropped = m.Counters()
    for k, v in st.items():
        if k.startswith("dropped/"):
            dropped.inc(k, v)
    assert st["dropped"] >= 0.7 * N, st
    for reason in ("bad_magic", "version", "malformed", "unknown_type", "invalid", "oversized", "bad_envelope"):
        assert st.get(f"dropped/{reason}", 0) > 0, (reason, st)
    assert fuzz_s < 60
    print("receiver stats after fuzzing:", st)


def test_fuzz_latest_state_server() -> None:
    cfg = _cfg()
    rng = random.Random(2)
    c = _codec()
    server = LatestStateServer(cfg, "tcp://127.0.0.1:0", name="fuzzed")
    try:
        server.update(adapter_announcement(4, "/a/v4", "base"))
        req = c.encode(m.LatestStateRequest(msg_id="r", sender="f", kinds=["adapter"]))
        valid = [[req], [b"", req], [c.encode(adapter_announcement(1, "p", "b"))], [req, req]]
        fz = zmq.Context.instance().socket(zmq.DEALER)
        fz.setsockopt(zmq.LINGER, 0)
        fz.setsockopt(zmq.SNDHWM, 100_000)
        fz.connect(server.endpoint)
        for parts in fuzz_messages(rng, valid, N):
            fz.send_multipart(parts)
        assert wait_until(lambda: server.counters.get("requests_received") >= N, 60), server.stats()
        fz.close(linger=0)
        rep = fetch_latest(server.endpoint, 5.0, cfg=cfg)
        assert rep.adapter is not None and rep.adapter.version == 4
        st = server.stats()
        assert st["dropped"] >= 0.7 * N, st
        assert server._thread.is_alive()
    finally:
        server.close()


def test_fuzz_subscriber() -> None:
    cfg = _cfg()
    rng = random.Random(3)
    c = _codec()
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.setsockopt(zmq.SNDHWM, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    with Announcer(cfg, "schema") as real_schema:
        sub = AnnouncementSubscriber(cfg, pub_addrs={"adapter": f"tcp://127.0.0.1:{port}",
                                                     "schema": real_schema.endpoint},
                                     state_addrs={"adapter": "tcp://127.0.0.1:9", "schema": real_schema.state_endpoint})
        try:
            # wait for the subscription to be live (PUB drops frames for a peer still connecting)
            probes = 0
            while sub.counters.get("frames_received") == 0:
                pub.send_multipart([b"probe"])
                probes += 1
                sub.poll(0.01)
                assert probes < 1000
            valid = [[b"adapter", c.encode(adapter_announcement(1, "/a/1", "b"))],
                     [b"schema", c.encode(schema_announcement(1, "h", {"x": [1, 2]}))],
                     [b"adapter", c.encode(schema_announcement(2, "h", {}))]]
            for parts in fuzz_messages(rng, valid, N):
                pub.send_multipart(parts)
            total = N + sub.counters.get("frames_received")  # probes sent while connecting were never delivered
            assert wait_until(lambda: (sub.poll(0.01) is not None) and sub.counters.get("frames_received") >= total,
                              60), sub.stats()
            st = sub.stats()
            assert st["dropped"] >= 0.7 * N, st
            # a valid announcement afterwards still arrives (newer than anything a mutation produced)
            v = (sub.adapter.version if sub.adapter else 0) + 1
            pub.send_multipart([b"adapter", c.encode(adapter_announcement(v, "/a/final", "b"))])
            assert sub.wait_for("adapter", v, 5).path == "/a/final"
            real_schema.publish(schema_announcement(10**6, "real", {"ok": True}))
            assert sub.wait_for("schema", 10**6, 5).document == {"ok": True}
        finally:
            sub.close()
            pub.close(linger=0)
