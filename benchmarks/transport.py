"""Transport speed: our reliable transition channel against raw pyzmq PUSH/PULL of the same bytes, same run.

    python benchmarks/transport.py                    # 50,000 transitions of ~2 KB, 5 interleaved rounds
    python benchmarks/transport.py --n 20000 --rounds 1 --latency-n 50     # quick (CI)

Throughput (messages per second, sender start to the receiver holding the last one):

* ours: real :class:`~automem_jax.records.Transition` records -> ``TransitionSender.send_many`` in batches of
  ``--batch`` (wrap, encode, durable spool write, credit window, acks) -> ``TransitionReceiver.recv`` in
  another process (size/prefix/version checks, msgpack decode into typed records, id de-duplication) ->
  a replay-buffer deque of ``--capacity`` transitions. ``--batch 1`` measures one ``send()`` per record.
* raw: the *same encoded bytes*, pre-encoded, one ZeroMQ message each, PUSH -> PULL in another process,
  received and counted (no decoding, no durability, no acknowledgement).

Rounds alternate raw/ours so a busy machine slows both alike; medians are reported. Target: ratio >= 0.5.

Each side alone: the actor's ``send_many`` with no learner listening (wrap, encode, spool write) and the
learner's handling of ready batches in one process (decode, validate, de-duplicate, keep), so a reader sees
which side bounds the end-to-end figure.

Latency: adapter export (``Announcer.publish``) -> a subscriber in another process receiving it
(:func:`announcement_latency`). Pass ``--consume module:function`` to time "receiving and using it": the
function is called in the subscriber process with each :class:`AdapterAnnouncement` (e.g. load the adapter
into the actor's model and generate once) and the latency runs to its return.

The last printed line is ``ratio=<ours / raw>``. ``--json PATH`` also writes every number.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zmq  # noqa: E402

from automem_jax.transport import (  # noqa: E402
    AnnouncementSubscriber,
    Announcer,
    TransitionReceiver,
    TransitionSender,
    TransportConfig,
    adapter_announcement,
    transition_msg,
)
from automem_jax.transport.messages import Codec  # noqa: E402
from automem_jax.transport.samples import sample_transition  # noqa: E402

TARGET = 0.5


def bench_config(**over) -> TransportConfig:
    base = dict(transitions_addr="tcp://127.0.0.1:0", adapters_addr="tcp://127.0.0.1:0",
                adapters_state_addr="tcp://127.0.0.1:0", log_interval_s=60.0)
    base.update(over)
    return TransportConfig(**base)


# ------------------------------------------------------------------------------------------------ receivers
# Each runs in its own process, reports its endpoint, then the monotonic time at which it held n messages.


def _raw_receiver(conn, n: int) -> None:
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 1000)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    conn.send(f"tcp://127.0.0.1:{port}")
    got = 0
    nbytes = 0
    while got < n:
        nbytes += len(pull.recv())
        got += 1
    conn.send((time.monotonic(), got, nbytes))
    pull.close(linger=0)
    ctx.term()


def _our_receiver(conn, n: int, capacity: int, cfg_json: str) -> None:
    import collections

    cfg = TransportConfig.model_validate_json(cfg_json)
    rx = TransitionReceiver(cfg)
    conn.send(rx.endpoint)
    buffer: collections.deque = collections.deque(maxlen=capacity)  # what the learner's replay buffer holds
    got = 0
    while got < n:
        for msg in rx.recv(timeout_s=0.1):
            buffer.append(msg.transition)
            got += 1
    done = time.monotonic()
    time.sleep(0.2)  # let the last acknowledgements go out
    rx.recv(0.0)
    conn.send((done, got, rx.stats()))
    rx.close()


def _spawn(target, *args):
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=target, args=(child, *args), daemon=True)
    p.start()
    return p, parent


# ------------------------------------------------------------------------------------------------- rounds


def run_raw(frames: list[bytes]) -> dict:
    p, conn = _spawn(_raw_receiver, len(frames))
    endpoint = conn.recv()
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 1000)
    push.connect(endpoint)
    push.send(frames[0])  # connection set-up outside the clock
    frames = frames[1:]
    t0 = time.monotonic()
    for f in frames:
        push.send(f)
    send_s = time.monotonic() - t0
    done, got, nbytes = conn.recv()
    p.join(10)
    push.close(linger=0)
    ctx.term()
    n = len(frames)
    return {"msgs_per_s": n / (done - t0), "seconds": done - t0, "send_seconds": send_s, "n": n}


def run_ours(records: list, batch: int, capacity: int, cfg: TransportConfig) -> dict:
    n = len(records)
    p, conn = _spawn(_our_receiver, n, capacity, cfg.model_dump_json())
    endpoint = conn.recv()
    with tempfile.TemporaryDirectory(prefix="automem-bench-spool-") as spool:
        tx = TransitionSender(cfg, "bench-actor", addr=endpoint, spool_dir=spool)
        # connection set-up outside the clock (the first record is part of the n the receiver counts)
        tx.send(records[0])
        tx.flush(10)
        t0 = time.monotonic()
        for i in range(1, n, batch):
            tx.send_many(records[i:i + batch])
        send_s = time.monotonic() - t0
        done, got, rx_stats = conn.recv()
        tx.flush(10)
        tx_stats = tx.stats()
        tx.close()
    p.join(10)
    assert got == n and rx_stats.get("duplicates", 0) == 0 and rx_stats.get("dropped", 0) == 0, rx_stats
    return {"msgs_per_s": (n - 1) / (done - t0), "seconds": done - t0, "send_seconds": send_s, "n": n - 1,
            "sender": {k: tx_stats[k] for k in ("sent", "replayed", "spooled", "batches_sent", "acks_received")
                       if k in tx_stats}}


# ------------------------------------------------------------------------------------------- per side alone


def sender_alone(records: list, batch: int, cfg: TransportConfig) -> float:
    """Messages/s of send_many with no learner listening: wrap, encode, spool write (the actor's own cost)."""
    cfg = cfg.model_copy(update={"transitions_addr": "tcp://127.0.0.1:9"})  # nothing listens there
    with tempfile.TemporaryDirectory(prefix="automem-bench-spool-") as spool:
        tx = TransitionSender(cfg, "bench-actor", spool_dir=spool, background=False)
        t0 = time.perf_counter()
        for i in range(0, len(records), batch):
            tx.send_many(records[i:i + batch])
        dt = time.perf_counter() - t0
        tx.close()
    return len(records) / dt


def receiver_alone(records: list, batch: int, cfg: TransportConfig) -> float:
    """Messages/s of the learner's handling of ready batches in one process, no socket: envelope checks, decode
    and validation into typed records, de-duplication, into a kept list (the learner's own cost)."""
    from automem_jax.transport.blocks import RecordBlock
    from automem_jax.transport.messages import DataBatch

    codec = Codec()
    msgs = []
    for i in range(0, len(records), batch):
        blk = RecordBlock.encode([transition_msg(t, "bench-actor") for t in records[i:i + batch]], codec.encode_into)
        blk.number(i + 1)
        header = codec.encode(DataBatch(msg_id=f"b/{i}", sender="bench-actor", stream="bench", first_seq=i + 1,
                                        committed=0, count=len(blk)))
        msgs.append([b"peer", header, memoryview(blk.data)])
    rx = TransitionReceiver(cfg)
    try:
        rx._send_ack = lambda *a, **k: None  # no peer to answer in this measurement
        out: list = []
        gc_was = gc.isenabled()
        gc.disable()  # as recv() does while it decodes
        t0 = time.perf_counter()
        for m in msgs:
            rx._handle(m, out, {})
        dt = time.perf_counter() - t0
        if gc_was:
            gc.enable()
        assert len(out) == len(records)
    finally:
        rx.close()
    return len(records) / dt


# ------------------------------------------------------------------------------------------------ latency


def _subscriber(conn, pub: str, state: str, n: int, consume: str | None, cfg_json: str) -> None:
    cfg = TransportConfig.model_validate_json(cfg_json)
    fn = None
    if consume:
        mod, _, name = consume.partition(":")
        fn = getattr(importlib.import_module(mod), name)
    sub = AnnouncementSubscriber(cfg, kinds=("adapter",), pub_addrs={"adapter": pub}, state_addrs={"adapter": state})
    sub.bootstrap()
    conn.send("ready")
    lat = []
    deadline = time.monotonic() + 60 + n
    while len(lat) < n and time.monotonic() < deadline:
        for ann in sub.poll(0.1):
            if ann.version == 0:
                continue  # the warm-up announcement
            if fn is not None:
                fn(ann)
            lat.append(time.time() - ann.created_at)
    conn.send(lat)
    sub.close()


def announcement_latency(n: int = 200, interval_s: float = 0.01, consume: str | None = None,
                         cfg: TransportConfig | None = None, adapter_path: str | None = None) -> dict:
    """Seconds from ``Announcer.publish`` (adapter export) to a subscriber in another process having it.

    ``consume`` ("module:function") runs in the subscriber on every announcement before the clock stops,
    so "export -> actor using the adapter" is measured by passing a function that loads and uses it.
    """
    cfg = cfg or bench_config()
    with Announcer(cfg, "adapter") as ad:
        ad.publish(adapter_announcement(0, "/warmup", "base"))
        p, conn = _spawn(_subscriber, ad.endpoint, ad.state_endpoint, n, consume, cfg.model_dump_json())
        conn.recv()
        time.sleep(0.3)  # the SUB connection is up (bootstrap went through the state server) and subscribed
        for v in range(1, n + 1):
            ad.publish(adapter_announcement(v, adapter_path or f"/runs/bench/adapters/v{v}", "base"))
            time.sleep(interval_s)
        lat = conn.recv()
        p.join(10)
    lat_ms = sorted(x * 1000 for x in lat)
    if not lat_ms:
        return {"n": 0}
    return {"n": len(lat_ms), "median_ms": statistics.median(lat_ms),
            "p99_ms": lat_ms[min(len(lat_ms) - 1, int(0.99 * len(lat_ms)))], "max_ms": lat_ms[-1]}


# ---------------------------------------------------------------------------------------------------- main


def _tiny_adapter() -> str:
    """A real, non-zero PEFT adapter for the tiny Qwen2 (what the learner would export)."""
    import tempfile

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from automem_jax.learner.session import tiny_model_dir
    from automem_jax.models import LoraConfig, LoRAParam, load_pretrained, save_adapter

    model, _ = load_pretrained(str(tiny_model_dir("qwen2")), LoraConfig(r=8, alpha=16.0, dropout=0.0,
                                                                        target_modules=("q_proj", "v_proj")),
                               jnp.float32, with_tokenizer=False)
    state = nnx.state(model, LoRAParam)
    keys = iter(jax.random.split(jax.random.key(0), len(jax.tree.leaves(state))))
    nnx.update(model, jax.tree.map(lambda x: 0.02 * jax.random.normal(next(keys), x.shape, x.dtype), state))
    out = Path(tempfile.mkdtemp(prefix="automem-bench-adapter-")) / "v000001"
    save_adapter(model, out)
    return str(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000, help="transitions per round")
    ap.add_argument("--size", type=int, default=2048, help="approximate encoded size of a transition (bytes)")
    ap.add_argument("--batch", type=int, default=64, help="records per send_many call (1 = one send per record)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--capacity", type=int, default=100_000, help="replay-buffer deque size on the learner side")
    ap.add_argument("--latency-n", type=int, default=200)
    ap.add_argument("--consume", default=None, help="module:function called on each announcement (latency)")
    ap.add_argument("--tiny-model", action="store_true",
                    help="latency to an actor using the adapter: announce a real PEFT adapter of the tiny Qwen2 and "
                         "have the subscriber swap it into a local backend and generate (benchmarks/tiny_adapter_consumer.py)")
    ap.add_argument("--json", default=None, help="write all numbers here")
    args = ap.parse_args(argv)

    print(f"building {args.n} transitions of ~{args.size} bytes ...", flush=True)
    records = [sample_transition(i, "bench-actor", target_bytes=args.size) for i in range(args.n)]
    codec = Codec()
    frames = [codec.encode(transition_msg(t)) for t in records]
    # An actor does not hold tens of thousands of records; this benchmark does (its input). Move them out of
    # the garbage collector's way so their scanning is not charged to the sender.
    gc.collect()
    gc.freeze()
    mean_size = sum(map(len, frames)) / len(frames)
    print(f"encoded size: mean {mean_size:.0f} bytes; batch={args.batch}; rounds={args.rounds}", flush=True)
    cfg = bench_config()

    raw, ours = [], []
    for r in range(args.rounds):
        raw.append(run_raw(frames))
        ours.append(run_ours(records, args.batch, args.capacity, cfg))
        print(f"round {r + 1}: raw pyzmq {raw[-1]['msgs_per_s']:,.0f} msg/s | ours {ours[-1]['msgs_per_s']:,.0f} msg/s "
              f"(sender returned after {ours[-1]['send_seconds']:.2f} s of {ours[-1]['seconds']:.2f} s)", flush=True)
    raw_rate = statistics.median(x["msgs_per_s"] for x in raw)
    our_rate = statistics.median(x["msgs_per_s"] for x in ours)
    ratio = our_rate / raw_rate
    mb = our_rate * mean_size / 1e6
    print(f"throughput: ours {our_rate:,.0f} msg/s ({mb:.0f} MB/s) vs raw pyzmq {raw_rate:,.0f} msg/s; "
          f"target ratio >= {TARGET} ({'met' if ratio >= TARGET else 'NOT met'})", flush=True)
    alone_tx = statistics.median(sender_alone(records, args.batch, cfg) for _ in range(3))
    alone_rx = statistics.median(receiver_alone(records, args.batch, cfg) for _ in range(3))
    print(f"each side alone, one process, no network: actor send_many {alone_tx:,.0f} msg/s "
          f"({1e6 / alone_tx:.2f} us/msg), learner receive {alone_rx:,.0f} msg/s ({1e6 / alone_rx:.2f} us/msg); "
          f"raw pyzmq end to end {1e6 / raw_rate:.2f} us/msg", flush=True)

    adapter_path = None
    if args.tiny_model:
        adapter_path = _tiny_adapter()
        args.consume = args.consume or "tiny_adapter_consumer:use"
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        os.environ["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent),
                                                    os.environ.get("PYTHONPATH", "")])
    lat = (announcement_latency(args.latency_n, consume=args.consume, cfg=cfg, adapter_path=adapter_path)
           if args.latency_n else {})
    if lat.get("n"):
        print(f"adapter announcement latency (publish -> subscriber in another process{' -> consume' if args.consume else ''}): "
              f"median {lat['median_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, max {lat['max_ms']:.2f} ms "
              f"over {lat['n']}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "mean_bytes": mean_size, "raw": raw, "ours": ours,
                                               "raw_msgs_per_s": raw_rate, "ours_msgs_per_s": our_rate,
                                               "ratio": ratio, "latency": lat,
                                               "sender_alone_msgs_per_s": alone_tx,
                                               "receiver_alone_msgs_per_s": alone_rx}, indent=2))
    print(f"ratio={ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
