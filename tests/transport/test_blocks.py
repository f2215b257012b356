"""Record blocks (the spool's and the wire's shared layout) and the learner's block decoder."""

from __future__ import annotations

from pathlib import Path

import pytest

from automem_jax.transport import messages as m
from automem_jax.transport.blocks import HDR_LEN, HEADER, RecordBlock, checksum, iter_records
from automem_jax.transport.samples import sample_summary, sample_transition
from automem_jax.transport.spool import Spool, SpoolError


def _msg(i: int) -> m.TransitionMsg:
    t = sample_transition(i, "a")
    return m.TransitionMsg(msg_id=t.id, sender="a", sent_at=1.0, transition=t)  # fixed time: same bytes every call


def _frames(n: int) -> list[bytes]:
    c = m.Codec()
    return [c.encode(_msg(i)) for i in range(n)]


def test_encode_equals_from_frames_and_numbers_records() -> None:
    c = m.Codec()
    a = RecordBlock.encode([_msg(i) for i in range(5)], c.encode_into)
    b = RecordBlock.from_frames(_frames(5))
    assert a.data == b.data and a.offsets == b.offsets and len(a) == 5
    a.number(41)
    frames = list(iter_records(a.data, 41, 5))
    assert [bytes(f) for f in frames] == _frames(5)  # type: ignore[arg-type]
    for i, off in enumerate(a.offsets):
        n, check, seq = HEADER.unpack_from(a.data, off)
        assert seq == 41 + i and check == checksum(frames[i])  # type: ignore[arg-type]
    assert a.payload_bytes == sum(map(len, _frames(5)))


def test_encode_error_leaves_nothing_behind() -> None:
    def boom(item: object, buf: bytearray) -> None:
        raise ValueError("too large")

    with pytest.raises(ValueError):
        RecordBlock.encode([1], boom)


def test_iter_records_reports_every_position_after_a_broken_header() -> None:
    blk = RecordBlock.from_frames(_frames(4))
    blk.number(1)
    data = bytearray(blk.data)
    HEADER.pack_into(data, blk.offsets[2], 5, 0, 99)  # record 3 claims to be record 99
    out = list(iter_records(data, 1, 4))
    assert out[:2] != [None, None] and out[2:] == [None, None]
    assert list(iter_records(data[: HDR_LEN - 1], 1, 2)) == [None, None]  # truncated header


def test_decode_block_valid_skip_and_broken() -> None:
    c = m.Codec()
    blk = RecordBlock.from_frames(_frames(3) + [c.encode(m.summary_msg(sample_summary(1, "a")))])
    blk.number(7)
    out = c.decode_block(blk.data, 7, 4)
    assert [type(x) for x in out] == [m.TransitionMsg] * 3 + [m.EpisodeSummaryMsg]
    assert [x.msg_id for x in c.decode_block(blk.data, 7, 4, skip=2)] == [out[2].msg_id, out[3].msg_id]  # type: ignore[union-attr]
    assert c.counters.as_dict() == {}
    # a corrupt frame is dropped alone; a broken header drops the rest of the block, all positions reported
    data = bytearray(blk.data)
    data[blk.offsets[1] + HDR_LEN + 10] ^= 0xFF
    HEADER.pack_into(data, blk.offsets[3], 1 << 30, 0, 10)
    out = c.decode_block(data, 7, 4)
    assert len(out) == 4 and out[0] is not None and out[2] is not None and out[3] is None
    assert c.counters.get("dropped") == 2 - (out[1] is not None)
    assert c.counters.get("dropped/malformed") >= 1
    # the empty placeholder the spool sends for an unreadable record is dropped, not fatal
    ph = RecordBlock.from_frames([b""])
    ph.number(1)
    assert c.decode_block(ph.data, 1, 1) == [None]


def test_read_block_is_a_zero_copy_slice_of_the_append(tmp_path: Path) -> None:
    with Spool(tmp_path) as sp:
        blk = RecordBlock.from_frames(_frames(10))
        sp.append_block(blk)
        view, n = sp.read_block(3, 4)
        assert n == 4 and isinstance(view, memoryview) and view.obj is blk.data
        assert [bytes(f) for f in iter_records(view, 3, 4)] == _frames(10)[2:6]  # type: ignore[arg-type]
        size = blk.offsets[5] - blk.offsets[2]  # records 3..5 fit, 6 does not
        assert sp.read_block(3, 10, max_bytes=size)[1] == 3
        assert sp.read_block(3, 10, max_bytes=1)[1] == 1  # always at least one
        assert sp.read_block(11, 5) == (b"", 0)


def test_read_block_from_disk_equals_cache(tmp_path: Path) -> None:
    frames = _frames(12)
    with Spool(tmp_path / "a") as cached, Spool(tmp_path / "b", cache_bytes=0) as disk:
        for sp in (cached, disk):
            sp.append_many(frames[:5])
            sp.append_many(frames[5:])
        for seq, k in ((1, 12), (4, 3), (6, 7)):
            a, na = cached.read_block(seq, k)
            b, nb = disk.read_block(seq, k)
            # from memory a read stops at the end of an appended block; from disk it may run on
            assert 1 <= na <= nb and bytes(b).startswith(bytes(a))
            assert [bytes(f) for f in iter_records(b, seq, nb)] == frames[seq - 1:seq - 1 + nb]  # type: ignore[arg-type]


def test_background_fsync_covers_closed_segments_and_close(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_bytes=3000, fsync_interval_s=0.05) as sp:
        for f in _frames(6):
            sp.append(f)
        assert len(list(tmp_path.glob("*.seg"))) >= 2
    sp2 = Spool(tmp_path)
    assert sp2.read(1, 10) == _frames(6)
    sp2.close()


def test_old_spool_format_is_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "meta.json").write_text('{"format": 1, "stream": "s", "committed": 0}')
    with pytest.raises(SpoolError, match="unsupported format 1"):
        Spool(tmp_path)
