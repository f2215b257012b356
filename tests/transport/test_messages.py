"""Wire format: every message type round-trips; hostile frames are dropped and counted by reason, never raised."""

from __future__ import annotations

import random

import msgspec
import pytest

from automem_jax.transport import messages as m
from automem_jax.transport.samples import sample_summary, sample_transition


def all_messages() -> list[m.Msg]:
    t = sample_transition(3)
    adapter = m.adapter_announcement(4, "/runs/a/adapters/v4", "Qwen/Qwen2.5-0.5B-Instruct", sha256="ab" * 32)
    schema = m.schema_announcement(2, "9f3e", {"name": "crafter-v5", "files": [{"name": "goals", "lines": 3}],
                                               "limits": {"max_lines": 25}, "nested": {"a": [1, 2.5, None, True]}},
                                   parent_version=1)
    return [
        m.Hello(msg_id="a0/hello/1", sender="a0", pid=12, host="h", versions={"package": "0.1.0", "adapter": 3},
                counters={"sent": 5.0}, stream="s1", sent_through=4, committed=2, role="actor", started_at=1.0),
        m.Heartbeat(msg_id="a0/hb/2", sender="a0", pid=12, host="h", stream="s1", sent_through=9, pending=3),
        m.transition_msg(t),
        m.summary_msg(sample_summary(7)),
        adapter,
        schema,
        m.LatestStateRequest(msg_id="r1", sender="a0", kinds=["adapter"]),
        m.LatestStateReply(msg_id="r2", sender="learner", request_id="r1", adapter=adapter, schema=schema),
        m.DataBatch(msg_id="b1", sender="a0", stream="s1", first_seq=5, committed=4, count=2),
        m.Ack(msg_id="k1", sender="learner", stream="s1", received=6, committed=6, rewind=True, reply_to="a0/hb/2"),
    ]


def test_every_type_is_covered() -> None:
    assert {type(x) for x in all_messages()} == set(m.ALL_TYPES)


@pytest.mark.parametrize("msg", all_messages(), ids=lambda x: type(x).__name__)
def test_round_trip(msg: m.Msg) -> None:
    codec = m.Codec()
    frame = codec.encode(msg)
    assert frame[:4] == m.PREFIX
    back = codec.decode(frame)
    assert back == msg and type(back) is type(msg)
    assert codec.counters.as_dict() == {}


def test_transition_message_id_is_the_transition_id() -> None:
    t = sample_transition(11, actor_id="actor-7")
    msg = m.transition_msg(t)
    assert msg.msg_id == t.id == "actor-7/ep0000-0/5/plan"
    assert msg.sender == "actor-7"
    assert 1500 < len(m.Codec().encode(msg)) < 2600  # "about 2 KB"


def _codec() -> m.Codec:
    return m.Codec(max_message_bytes=64 * 1024, log_interval_s=60)


def _body(frame: bytes) -> dict:
    return msgspec.msgpack.decode(frame[4:])


def _frame(obj: object) -> bytes:
    return m.PREFIX + msgspec.msgpack.encode(obj)


def hostile_frames() -> list[tuple[str, bytes]]:
    good = m.Codec().encode(m.transition_msg(sample_transition(1)))
    d = _body(good)
    wrong_type = dict(d, transition=dict(d["transition"], step="seven"))
    missing = {k: v for k, v in d.items() if k != "transition"}
    mismatched_id = dict(d, msg_id="not-the-transition-id")
    rng = random.Random(0)
    return [
        ("bad_magic", b""),
        ("bad_magic", b"AMJ"),
        ("bad_magic", bytes(rng.randrange(256) for _ in range(200))),
        ("bad_magic", b"\x00" + good[1:]),
        ("bad_magic", msgspec.msgpack.encode(d)),  # a valid message without the prefix
        ("version", m.MAGIC + bytes([m.PROTOCOL_VERSION + 1]) + good[4:]),
        ("version", m.MAGIC + b"\x00" + good[4:]),
        ("malformed", good[: len(good) // 2]),  # truncated
        ("malformed", m.PREFIX + b"\xc1"),  # reserved msgpack byte
        ("malformed", good + b"\x00"),  # trailing bytes
        ("unknown_type", _frame(dict(d, type="launch_missiles"))),
        ("unknown_type", _frame({k: v for k, v in d.items() if k != "type"})),
        ("invalid", _frame(wrong_type)),
        ("invalid", _frame(missing)),
        ("invalid", _frame(mismatched_id)),
        ("invalid", _frame([1, 2, 3])),
        ("invalid", _frame(dict(type="data", msg_id="x", sender="a", stream="s", first_seq=0, committed=0,
                                count=1))),
        ("invalid", _frame(dict(type="data", msg_id="x", sender="a", stream="s", first_seq=1, committed=0,
                                count=0))),
        ("invalid", _frame(dict(type="data", msg_id="x", sender="a", stream="s", first_seq=1, committed=0,
                                count="two"))),
        ("invalid", _frame(dict(type="ack", msg_id="x", sender="l", stream="s", received=1, committed=5))),
        ("invalid", _frame(dict(type="adapter", msg_id="x", sender="l", version=-1, path="p", base_model="b",
                                created_at=0.0))),
        ("oversized", m.PREFIX + b"\x00" * (64 * 1024)),
    ]


@pytest.mark.parametrize("reason,frame", hostile_frames(), ids=[f"{r}-{i}" for i, (r, _) in enumerate(hostile_frames())])
def test_hostile_frame_is_dropped_by_reason(reason: str, frame: bytes) -> None:
    codec = _codec()
    assert codec.decode(frame) is None
    assert codec.counters.dropped() == {reason: 1}
    assert codec.counters.get("dropped") == 1


def test_oversized_is_rejected_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = _codec()
    calls = []
    monkeypatch.setattr(codec, "_dec", type("D", (), {"decode": lambda self, b: calls.append(b)})())
    assert codec.decode(m.PREFIX + b"\x80" * (64 * 1024 + 1)) is None
    assert calls == [] and codec.counters.dropped() == {"oversized": 1}


def test_unexpected_type_for_the_socket() -> None:
    codec = _codec()
    frame = codec.encode(m.Ack(msg_id="k", sender="l", stream="s", received=1, committed=1))
    assert codec.decode(frame, (m.TransitionMsg,)) is None
    assert codec.counters.dropped() == {"unexpected": 1}


def test_non_buffer_input_is_counted_not_raised() -> None:
    codec = _codec()
    assert codec.decode(12345) is None  # type: ignore[arg-type]
    assert codec.counters.dropped() == {"malformed": 1}


def test_deeply_nested_document_does_not_crash() -> None:
    codec = _codec()
    head = msgspec.msgpack.encode({"type": "schema", "msg_id": "x", "sender": "r", "version": 1, "hash": "h"})
    depth = 60_000
    # a 6-key map whose "document" value is {"d": [[[[...1...]]]]} nested 60,000 deep, written by hand
    raw = b"\x86" + head[1:] + msgspec.msgpack.encode("document") + b"\x81" + msgspec.msgpack.encode("d")
    raw += b"\x91" * depth + b"\x01"
    out = codec.decode(m.PREFIX + raw)
    assert out is None  # msgspec's recursion guard fires; the codec counts it instead of raising
    assert codec.counters.dropped() == {"malformed": 1}


def test_unknown_extra_fields_are_ignored() -> None:
    """Forward compatibility within a protocol version: a newer sender may add optional fields."""
    codec = _codec()
    d = _body(codec.encode(m.LatestStateRequest(msg_id="r", sender="a")))
    out = codec.decode(_frame(dict(d, future_field={"x": 1})))
    assert isinstance(out, m.LatestStateRequest)


def test_drop_logging_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    codec = m.Codec(log_interval_s=3600)
    with caplog.at_level("WARNING", logger="automem.transport"):
        for _ in range(500):
            codec.decode(b"garbage")
    assert codec.counters.dropped() == {"bad_magic": 500}
    assert len([r for r in caplog.records if "dropped a frame" in r.getMessage()]) == 1
