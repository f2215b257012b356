"""Actors on an http (vLLM) backend pick up announced adapters: the designated actor hot-loads each one into
the server and verifies it, the others wait until it is served; a failure keeps the previous adapter.
Real ZeroMQ announcements on loopback, a loopback HTTP server with vLLM's LoRA routes (the test fake)."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.openai_server import FakeOpenAIServer

from automem_jax.actor import Actor
from automem_jax.records import Message
from automem_jax.run_config import RunConfig
from automem_jax.transport import Announcer, TransportConfig, adapter_announcement

NAME = "memory-specialist"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _adapter(tmp_path: Path, version: int) -> str:
    d = tmp_path / "learner" / "adapters" / f"v{version:06d}"
    d.mkdir(parents=True)
    (d / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 16}))
    return str(d)


class _NoStop:
    def __call__(self) -> bool:
        return False


@pytest.fixture
def announcer() -> Iterator[Announcer]:
    cfg = TransportConfig(adapters_addr="tcp://127.0.0.1:0", adapters_state_addr="tcp://127.0.0.1:0",
                          republish_interval_s=0.2, request_timeout_s=1.0)
    with Announcer(cfg, "adapter") as ann:
        yield ann


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(["ok"], base_model="base-model", strict_models=True) as srv:
        yield srv


def _actor(tmp_path: Path, index: int, srv: FakeOpenAIServer, ann: Announcer, **actors: object) -> Actor:
    dead = f"tcp://127.0.0.1:{_free_port()}"  # no learner or reviewer: nothing listens there
    cfg = RunConfig(
        run_dir=str(tmp_path / "run"),
        backend=dict(kind="http", base_url=srv.base_url, model="base-model", adapter=NAME, timeout_s=5.0,
                     max_retries=0),
        actors={"count": 2, "adapter_wait_s": 3.0, **actors},
        transport=dict(transitions_addr=dead, schemas_addr=dead, schemas_state_addr=dead,
                       adapters_addr=ann.endpoint, adapters_state_addr=ann.state_endpoint,
                       request_timeout_s=0.5, republish_interval_s=0.2),
    ).resolve_paths()
    return Actor(cfg, index, stop=_NoStop())  # type: ignore[arg-type]


def _ask(actor: Actor) -> str:
    actor.backend.complete([Message("user", "hi")], max_tokens=2)
    return str(actor.backend.model)


def test_loader_actor_loads_and_the_other_follows(tmp_path: Path, server: FakeOpenAIServer,
                                                   announcer: Announcer) -> None:
    a0, a1 = _actor(tmp_path, 0, server, announcer), _actor(tmp_path, 1, server, announcer)
    try:
        a0.apply_announcements(first=True)
        a1.apply_announcements(first=True)
        # nothing announced yet: both play the base model (the adapter name is not served)
        assert _ask(a0) == _ask(a1) == "base-model" and a0.adapter_version == a1.adapter_version == 0

        p1 = _adapter(tmp_path, 1)
        announcer.publish(adapter_announcement(1, p1, "base-model"))
        assert a1.sub.wait_for("adapter", 1, 5) is not None and a0.sub.wait_for("adapter", 1, 5) is not None
        # actor 1 waits (bounded) for actor 0, which loads between its episodes
        t = threading.Thread(target=a1.apply_announcements)
        t.start()
        a0.apply_announcements()
        t.join(10)
        assert not t.is_alive()
        assert server.adapters == {NAME: p1}
        assert (a0.adapter_version, a1.adapter_version) == (1, 1)
        assert _ask(a0) == _ask(a1) == NAME and server.lora_requests[-2:] == [p1, p1]
        assert server.paths.count("POST /v1/load_lora_adapter") == 1  # only the loader loads

        # a new version replaces the old one in place
        p2 = _adapter(tmp_path, 2)
        announcer.publish(adapter_announcement(2, p2, "base-model"))
        assert a0.sub.wait_for("adapter", 2, 5) is not None and a1.sub.wait_for("adapter", 2, 5) is not None
        a0.apply_announcements()
        a1.apply_announcements()
        assert server.adapters == {NAME: p2} and (a0.adapter_version, a1.adapter_version) == (2, 2)
        assert _ask(a1) == NAME and server.lora_requests[-1] == p2
    finally:
        a0.close()
        a1.close()


def test_failed_load_keeps_the_previous_adapter(tmp_path: Path, server: FakeOpenAIServer, announcer: Announcer,
                                                caplog: pytest.LogCaptureFixture) -> None:
    a0, a1 = _actor(tmp_path, 0, server, announcer), _actor(tmp_path, 1, server, announcer, adapter_wait_s=0.3)
    try:
        p1 = _adapter(tmp_path, 1)
        announcer.publish(adapter_announcement(1, p1, "base-model"))
        a0.apply_announcements(first=True)
        a1.apply_announcements(first=True)
        assert (a0.adapter_version, a1.adapter_version) == (1, 1)

        missing = str(tmp_path / "learner" / "adapters" / "v000002")  # announced, but vLLM cannot read it
        announcer.publish(adapter_announcement(2, missing, "base-model"))
        assert a0.sub.wait_for("adapter", 2, 5) is not None and a1.sub.wait_for("adapter", 2, 5) is not None
        with caplog.at_level(logging.ERROR, logger="automem.actor"):
            a0.apply_announcements()
            a1.apply_announcements()
        assert (a0.adapter_version, a1.adapter_version) == (1, 1)  # still playing v1, still alive
        assert server.adapters == {NAME: p1}
        assert _ask(a0) == _ask(a1) == NAME and server.lora_requests[-1] == p1
        errors = [r.getMessage() for r in caplog.records]
        assert any("actor-0: adapter v2" in m and "HTTP 404" in m for m in errors), errors
        assert any("actor-1: adapter v2" in m and "does not serve" in m and "keeping v1" in m for m in errors), errors
    finally:
        a0.close()
        a1.close()


def test_restarted_actor_uses_the_served_adapter_without_reloading(tmp_path: Path, server: FakeOpenAIServer,
                                                                    announcer: Announcer) -> None:
    p3 = _adapter(tmp_path, 3)
    server.adapters[NAME] = p3  # loaded before this actor (re)started
    announcer.publish(adapter_announcement(3, p3, "base-model"))
    a0 = _actor(tmp_path, 0, server, announcer)
    try:
        a0.apply_announcements(first=True)
        assert a0.adapter_version == 3 and _ask(a0) == NAME
        assert "POST /v1/load_lora_adapter" not in server.paths
    finally:
        a0.close()


def test_designated_loader_is_configurable(tmp_path: Path, server: FakeOpenAIServer, announcer: Announcer) -> None:
    p1 = _adapter(tmp_path, 1)
    announcer.publish(adapter_announcement(1, p1, "base-model"))
    a1 = _actor(tmp_path, 1, server, announcer, adapter_loader=1)
    try:
        a1.apply_announcements(first=True)
        assert a1.adapter_version == 1 and server.adapters == {NAME: p1}
    finally:
        a1.close()


def test_status_file_shows_a_new_adapter_as_soon_as_it_is_applied(tmp_path: Path, server: FakeOpenAIServer,
                                                                   announcer: Announcer) -> None:
    """The launcher's status line and its "picked up by every actor" stop read the actor's status file: it must
    name the version the actor plays *now*, written when the adapter is applied between episodes, not only
    when the next episode ends."""
    from automem_jax.status import read_statuses

    a0 = _actor(tmp_path, 0, server, announcer)
    p1 = _adapter(tmp_path, 1)

    def episode_during_which_v1_is_announced() -> None:  # stands in for play_one (no game needed here)
        announcer.publish(adapter_announcement(1, p1, "base-model"))
        assert a0.sub.wait_for("adapter", 1, 5) is not None

    a0.play_one = episode_during_which_v1_is_announced  # type: ignore[method-assign]
    try:
        assert a0.run(episodes=1) == 1
        st = read_statuses(tmp_path / "run")["actor-0"]
        assert st["adapter_version"] == 1 and a0.adapter_version == 1
    finally:
        a0.close()
