"""The actor process: plays episodes with the memory agent and streams what it did to the learner.

    automem actor CONFIG --id K [dotted overrides]

Per episode it (1) applies the newest adapter and schema announced by the learner and the reviewer (only
between episodes, so an episode never mixes versions), (2) plays the episode through the shared loop,
sending every transition as it is produced, (3) sends the episode summary, writes its status file and
TensorBoard scalars. Transitions go through the durable sender: they are on disk before the agent moves on,
and are replayed if the learner was away, so a killed actor or learner loses nothing.

Actors are stateless apart from a counter of played episodes (``actors/<id>/state.json``), which keeps
seeds moving forward across restarts; everything else can be thrown away.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from automem_jax.config import cli_config, load_config
from automem_jax.policy.vllm_adapters import VLLMAdapterLoader
from automem_jax.run_config import RunConfig, resolved_schema
from automem_jax.status import write_status

log = logging.getLogger("automem.actor")


class StopFlag:
    """Set by SIGTERM/SIGINT: the current step finishes, the episode ends as "interrupted"."""

    def __init__(self) -> None:
        self.stop = False
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, *_: Any) -> None:
        self.stop = True

    def __call__(self) -> bool:
        return self.stop


class Actor:
    def __init__(self, cfg: RunConfig, index: int, stop: StopFlag | None = None) -> None:
        from automem_jax.agent import make_agent
        from automem_jax.envs import make_env
        from automem_jax.learner.tb import TBWriter
        from automem_jax.policy.factory import lora_slots, make_backend
        from automem_jax.transport import AnnouncementSubscriber, TransitionSender

        self.cfg = cfg
        self.index = index
        self.actor_id = f"actor-{index}"
        self.dir = Path(cfg.run_dir) / "actors" / self.actor_id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.stop = stop or StopFlag()
        self.state_path = self.dir / "state.json"
        self.state = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {"episodes": 0}
        lora = cfg.learner.model.lora
        slots = lora_slots(lora.r, lora.alpha, lora.targets) if cfg.actors.apply_adapters else None
        self.backend = make_backend(cfg.backend, lora=slots)
        # vLLM: adapters are hot-loaded into the server under the name backend.adapter (by one actor) and
        # used by that name; until the first one is served, the actor plays with the base model.
        self.vllm: VLLMAdapterLoader | None = None
        if cfg.backend.kind == "http" and cfg.backend.adapter and cfg.actors.apply_adapters:
            self.vllm = VLLMAdapterLoader(cfg.backend.base_url, cfg.backend.adapter,
                                          api_key_env=cfg.backend.api_key_env, timeout_s=cfg.backend.timeout_s)
            self.backend.use_model(cfg.backend.model, 0)  # type: ignore[attr-defined]
        # Two-model mode: the gameplay model is the frozen base, without adapter slots.
        self.gameplay = make_backend(cfg.gameplay_backend) if cfg.gameplay_backend else None
        self.agent = make_agent(
            "memory", schema=resolved_schema(cfg.agent), backend=self.backend, gameplay_backend=self.gameplay,
            env_name=cfg.env.name, context_tokens=cfg.agent.context_tokens, notes_max_chars=cfg.agent.notes_max_chars,
            memory_root=self.dir / "episodes", keep_episodes=cfg.agent.keep_episodes, write_trace=True,
            seed=cfg.actors.seed_base + index,
        )
        kwargs: dict[str, Any] = {}
        if cfg.env.boxoban_dir:
            kwargs["boxoban_dir"] = cfg.env.boxoban_dir
        self._env_kwargs = kwargs
        self._make_env = make_env
        self.envs: dict[str | None, Any] = {}
        self.tx = TransitionSender(cfg.transport, self.actor_id)
        self.sub = AnnouncementSubscriber(cfg.transport)
        self.tb = TBWriter(Path(cfg.run_dir) / "tb" / self.actor_id)
        self.adapter_version = 0
        self.schema_version = self.agent.schema.version
        self.started = time.time()
        self.last_progression: float | None = None  # of the last finished episode (status file)
        self.totals = {"episodes": 0, "steps": 0, "transitions": 0}

    # ------------------------------------------------------------------------------------ versions
    def apply_announcements(self, first: bool = False) -> None:
        """Adopt the newest adapter and schema (called between episodes only)."""
        if first:
            self.sub.bootstrap(timeout_s=self.cfg.transport.request_timeout_s)
        else:
            self.sub.poll(0.0)
        ad = self.sub.adapter
        if ad is not None and ad.version > self.adapter_version and self.cfg.actors.apply_adapters:
            t0 = time.perf_counter()
            try:
                self._load_adapter(ad.path, ad.version)
            except Exception as e:  # a bad adapter must not kill the actor: keep the current one
                log.error("%s: adapter v%d at %s not applied: %s", self.actor_id, ad.version, ad.path, e)
            else:
                self.adapter_version = ad.version
                self.tb.scalar("staleness/adapter_apply_s", time.perf_counter() - t0, self.totals["episodes"])
                self.tb.scalar("staleness/adapter_latency_s", max(0.0, time.time() - ad.created_at),
                               self.totals["episodes"])
                log.info("%s: now playing with adapter v%d", self.actor_id, ad.version)
        sc = self.sub.schema
        if sc is not None and sc.version > self.schema_version:
            try:
                self.agent.set_schema(sc.document)
            except Exception as e:  # the reviewer validated it; a failure here is logged, not fatal
                log.error("%s: schema v%d not applied: %s", self.actor_id, sc.version, e)
            else:
                self.schema_version = sc.version
                log.info("%s: now playing with schema v%d (%s)", self.actor_id, sc.version, sc.hash[:12])
        self.tx.set_versions(adapter=self.adapter_version, schema=self.schema_version)

    def _load_adapter(self, path: str, version: int) -> None:
        if self.vllm is not None:
            loader = self.cfg.actors.adapter_loader
            if self.index == loader:
                self.vllm.load(path, version)  # load, verify it is listed, probe; raises on any failure
            elif not self.vllm.wait_loaded(path, self.cfg.actors.adapter_wait_s, stop=self.stop):
                raise RuntimeError(f"{self.vllm.root} does not serve {self.vllm.name!r} from {path} yet (actor-{loader} "
                                   f"loads it); keeping v{self.adapter_version}, checking again after the next episode")
            self.backend.use_model(self.vllm.name, version)  # type: ignore[attr-defined]
            return
        for b in (self.backend, self.gameplay):
            if b is None:
                continue
            if b is self.gameplay:
                continue  # two-model mode: the gameplay model stays the frozen base
            setter = getattr(b, "set_adapter", None)
            if setter is None:
                raise RuntimeError(f"backend {b.name} cannot take adapters")
            setter(path, version)

    # ------------------------------------------------------------------------------------ episodes
    def env_for(self, task: str | None) -> Any:
        if task not in self.envs:
            self.envs[task] = self._make_env(self.cfg.env.name, task, **self._env_kwargs)
        return self.envs[task]

    def next_task(self) -> str | None:
        if self.cfg.env.name != "minihack":
            return None
        from automem_jax.envs import minihack_tasks

        tasks = self.cfg.env.tasks or minihack_tasks()
        return tasks[(self.state["episodes"] + self.index) % len(tasks)]

    def play_one(self) -> Any:
        from automem_jax.agent.protocol import EpisodeContext
        from automem_jax.episode import run_episode
        from automem_jax.records import EpisodeSummary, new_episode_id

        n = int(self.state["episodes"])
        seed = self.cfg.actors.seed_base + self.index * self.cfg.actors.seed_stride + n
        task = self.next_task()
        env = self.env_for(task)
        ctx = EpisodeContext(self.actor_id, new_episode_id(), self.cfg.env.name, task, seed,
                             list(env.valid_actions), env.default_action)
        sent = [0]

        def stream(transitions: list[Any]) -> None:
            for tr in transitions:
                self.tx.send_transition(tr)
            sent[0] += len(transitions)

        t0 = time.time()
        res = run_episode(env, self.agent, ctx, max_steps=self.cfg.env.max_steps, on_transitions=stream,
                          should_stop=self.stop)
        trace = getattr(self.agent, "trace_path", None)
        summary = EpisodeSummary(
            episode_id=ctx.episode_id, actor_id=self.actor_id, env=ctx.env_name, task=task, seed=seed,
            steps=res.steps, episode_return=res.episode_return, progression=res.progression,
            done_reason=res.done_reason, adapter_version=self.adapter_version, schema_version=self.schema_version,
            schema_hash=self.agent.schema.hash,
            diagnostics={k: float(v) for k, v in res.diagnostics.items()},
            stats={k: float(v) for k, v in res.stats.items() if isinstance(v, (int, float))},
            n_transitions=sent[0], trace_path=str(trace) if trace else None, started_at=t0, ended_at=time.time(),
        )
        self.tx.send_summary(summary)
        self.state["episodes"] = n + 1
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state))
        os.replace(tmp, self.state_path)
        self.totals["episodes"] += 1
        self.totals["steps"] += res.steps
        self.totals["transitions"] += sent[0]
        self._report(res, summary)
        return summary

    def _report(self, res: Any, summary: Any) -> None:
        e = self.totals["episodes"]
        tb = self.tb
        tb.scalar("eval/progression", res.progression, e)
        tb.scalar("eval/episode_return", res.episode_return, e)
        tb.scalar("eval/steps", res.steps, e)
        tb.scalar("perf/steps_per_s", res.steps / max(res.wall_s, 1e-9), e)
        tb.scalar("perf/episode_s", res.wall_s, e)
        tb.scalar("staleness/adapter_version", self.adapter_version, e)
        tb.scalar("staleness/schema_version", self.schema_version, e)
        for k, v in res.diagnostics.items():
            tb.scalar(f"memory/{k}", float(v), e)
        for k, v in self.tx.stats().items():
            tb.scalar(f"perf/transport_{k.replace('/', '_')}", float(v), e)
        tb.flush()
        self.last_progression = res.progression
        self.write_status()
        print(f"[{self.actor_id}] episode {e} seed={summary.seed} steps={res.steps} prog={res.progression:.3f} "
              f"adapter=v{self.adapter_version} schema=v{self.schema_version} {res.wall_s:.1f}s "
              f"spool={self.tx.pending}", flush=True)

    def run(self, episodes: int | None = None) -> int:
        self.apply_announcements(first=True)
        self.write_status()
        played = 0
        while not self.stop() and (episodes is None or played < episodes):
            self.play_one()
            played += 1
            before = (self.adapter_version, self.schema_version)
            self.apply_announcements()
            if (self.adapter_version, self.schema_version) != before:
                self.write_status()  # the launcher sees the versions the next episode plays with at once
        return played

    def write_status(self) -> None:
        """``<run>/status/<actor>.json`` for the launcher: totals and the versions this actor plays with now."""
        write_status(self.cfg.run_dir, self.actor_id, {
            **self.totals, "adapter_version": self.adapter_version, "schema_version": self.schema_version,
            "last_progression": self.last_progression, "spool_pending": self.tx.pending,
            "uptime_s": time.time() - self.started,
        })

    def close(self) -> None:
        self.tx.close(flush_timeout_s=10.0)
        self.sub.close()
        for env in self.envs.values():
            env.close()
        self.tb.close()
        for b in (self.backend, self.gameplay):
            if b is not None:
                b.close()


def load_run_config(path: str | None, overrides: list[str]) -> RunConfig:
    return load_config(RunConfig, path, overrides).resolve_paths()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="run config (preset name or YAML path; the launcher passes <run_dir>/config.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted overrides")
    p.add_argument("--id", type=int, default=0, help="actor index")
    p.add_argument("--episodes", type=int, default=None, help="episodes to play (default: actors.episodes)")
    p.add_argument("--print-config", action="store_true")


def run(args: argparse.Namespace) -> int:
    cfg, code = cli_config("automem actor", lambda: load_run_config(args.config, list(args.overrides)),
                           args.print_config)
    if cfg is None:
        return code or 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    stop = StopFlag()
    actor = Actor(cfg, args.id, stop)
    try:
        actor.run(args.episodes if args.episodes is not None else cfg.actors.episodes)
    finally:
        actor.close()
    return 0
