"""The alert engine: evaluates every enabled rule, steps its state machine, stores and publishes transitions.

Two drivers, neither on the ingest path:

* **Series rules** (``threshold``): the writer's listener (:meth:`AlertEngine.on_written`) only queues a
  reference to each committed batch (and nothing at all while no series rule exists); one task takes the
  batches in order and evaluates them in memory (``series``). Only a transition touches the database.
* **Scheduled rules** (windows, budgets, no data, plugins, cloud budgets, anomalies): one pass every
  ``evaluation_interval`` seconds (``scheduled``), at the engine's clock (injectable for tests).

Every rule is evaluated on its own: an exception in one is logged, counted and shown in ``/health``
(``status()["failing_rules"]``), and every other rule goes on. A transition is stored with the rule's new
state in one transaction (``db.queries.alerts.record_transition``) before it is published to the stream
and handed to the webhook sender, so a restart repeats no "fired" and loses no "resolved"; when storing
fails (the database is down) the state is rolled back and the next observation tries again.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import asyncpg
from prometheus_client import Counter, Gauge

from aetherlens.alerts import anomaly
from aetherlens.alerts.machine import MachineState, Observation, step
from aetherlens.alerts.rules import SCHEDULED_KINDS
from aetherlens.alerts.scheduled import EVALUATORS, Pass
from aetherlens.alerts.series import SeriesIndex, describe, series_key
from aetherlens.alerts.sources import NO_COSTS, CostSource
from aetherlens.alerts.webhooks import WebhookOptions, WebhookSender
from aetherlens.alerts.windows import calendar
from aetherlens.config import Settings
from aetherlens.db.queries import alerts as q
from aetherlens.errors import NotFoundError

log = logging.getLogger(__name__)

QUEUE_BATCHES: Final = 1000  # committed batches waiting for the series evaluator before the oldest drops

TRANSITIONS = Counter("aetherlens_alert_transitions_total", "Alert transitions stored", ["state", "severity"])
RULE_ERRORS = Counter("aetherlens_alert_rule_errors_total", "Alert rule evaluations that raised")
DROPPED = Counter(
    "aetherlens_alert_batches_dropped_total", "Write batches the series evaluator fell behind on"
)
FIRING = Gauge("aetherlens_alerts_firing", "Alert series currently firing")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


type Publish = Callable[[dict[str, Any]], object]


@dataclass
class _Rule:
    rule: q.AlertRule
    states: dict[str, MachineState]


class AlertEngine:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        *,
        publish: Publish | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        webhooks: WebhookOptions | None = None,
        costs: CostSource = NO_COSTS,
    ) -> None:
        self.pool = pool
        self.costs = costs
        self.settings = settings
        self.publish = publish
        self.clock = clock
        self.interval = settings.alerts.evaluation_interval
        self.sender = WebhookSender(pool, webhooks or webhook_options(settings), clock=clock)
        self._rules: dict[int, _Rule] = {}
        self._index = SeriesIndex()
        self._version: tuple[int, dt.datetime | None] | None = None
        self._reload_wanted = True
        self._queue: collections.deque[Sequence[Any]] = collections.deque(maxlen=QUEUE_BATCHES)
        self._queued = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._dirty: set[int] = set()
        self._baselines = anomaly.BaselineCache()
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()  # one evaluation touches a rule's state at a time
        self.failing_rules: dict[int, str] = {}
        self.last_pass: dt.datetime | None = None
        self.last_pass_error: str | None = None
        self.dropped_batches = 0
        self.rows_seen = 0  # rows of committed batches evaluated (or needing no evaluation)

    # -- lifecycle ---------------------------------------------------------------------------------------
    async def start(self, *, schedule: bool = True, webhooks: bool = True) -> None:
        """Start the series evaluator, and (unless a test drives them itself with
        :meth:`evaluate_scheduled` / ``sender.deliver_due``) the schedule and the webhook sender."""
        await self.reload()
        self._tasks = [asyncio.create_task(self._series_loop(), name="alerts-series")]
        if schedule:
            self._tasks.append(asyncio.create_task(self._schedule_loop(), name="alerts-schedule"))
        if webhooks:
            self._tasks.append(asyncio.create_task(self.sender.run(), name="alerts-webhooks"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        try:
            await self.save_states()
        except Exception:
            log.exception("could not store alert states at stop")
        await self.sender.close()

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    def rules_changed(self) -> None:
        """A rule was created, changed or deleted (the API calls this): reload before the next evaluation."""
        self._reload_wanted = True
        self._queued.set()

    def transition_recorded(self) -> None:
        """Another part (the API's ack) stored a transition with outbox rows: deliver it now."""
        self.sender.nudge()

    # -- rules -------------------------------------------------------------------------------------------
    async def reload(self) -> None:
        """Read the enabled rules; a rule whose definition did not change keeps its in-memory state, a new
        or changed one starts from its stored state, and every open event is a firing state."""
        async with self._lock:
            self._reload_wanted = False
            self._version = await q.rules_version(self.pool)
            stored = await q.engine_rules(self.pool)
            opened = await q.open_events(self.pool)
            rules: dict[int, _Rule] = {}
            for er in stored:
                known = self._rules.get(er.rule.id)
                if known is not None and known.rule.updated_at == er.rule.updated_at:
                    rules[er.rule.id] = _Rule(er.rule, known.states)
                    continue
                states = {k: MachineState.from_json(v) for k, v in er.state.items()}
                rules[er.rule.id] = _Rule(er.rule, states)
            orphans: list[tuple[int, str | None, int]] = []
            for alert_id, device_id, event_id, triggered_at in opened:
                entry = rules.get(alert_id)
                if entry is None:  # its rule was disabled: nothing will resolve it any more
                    orphans.append((alert_id, device_id, event_id))
                    continue
                key = series_key(device_id)
                current = entry.states.get(key, MachineState())
                if current.phase != "firing" or current.event_id != event_id:
                    entry.states[key] = replace(
                        current, phase="firing", since=triggered_at, event_id=event_id
                    )
            self._rules = rules
            self._index = SeriesIndex(r.rule for r in rules.values())
            self.failing_rules = {k: v for k, v in self.failing_rules.items() if k in rules}
            for rule_id, problem in self._index.invalid.items():
                self._rule_failed(rule_id, ValueError(problem))
            FIRING.set(sum(s.phase == "firing" for r in rules.values() for s in r.states.values()))
            for alert_id, device_id, event_id in orphans:
                await self._close_disabled(alert_id, device_id, event_id)

    async def _close_disabled(self, alert_id: int, device_id: str | None, event_id: int) -> None:
        """Resolve the open event of a disabled rule, so no consumer shows it firing forever."""
        try:
            rule = await q.get_alert(self.pool, alert_id)
        except NotFoundError:
            return
        now = self.clock()
        entry = _Rule(rule, {})
        obs = Observation(now, False, True, None, f"{rule.name}: the rule was disabled")
        try:
            _, data = await self._record(
                entry,
                series_key(device_id),
                device_id,
                MachineState(resolved_at=now),
                "resolved",
                obs,
                obs.message,
                event_id,
            )
        except Exception:
            log.exception("could not resolve the open event %s of disabled rule %s", event_id, alert_id)
            return
        if data is not None:
            self._deliver(rule, data)

    async def _reload_if_changed(self) -> None:
        if self._reload_wanted or await q.rules_version(self.pool) != self._version:
            await self.reload()

    async def save_states(self) -> None:
        """Store the states that changed without a transition (pending timers), so a restart keeps them."""
        dirty, self._dirty = self._dirty, set()
        states = {i: self._state_json(i) for i in dirty if i in self._rules}
        try:
            await q.save_states(self.pool, states)
        except Exception:
            self._dirty |= dirty
            raise

    def _state_json(self, rule_id: int) -> dict[str, Any]:
        return {k: s.to_json() for k, s in self._rules[rule_id].states.items()}

    # -- series rules (writer listener) -----------------------------------------------------------------
    def on_written(self, rows: Sequence[Any]) -> None:
        """Writer listener: queue the committed batch for the series evaluator and return at once."""
        if not self._index:
            self.rows_seen += len(rows)
            return
        if len(self._queue) == self._queue.maxlen:  # the oldest batch drops out (its rows are stored)
            self.dropped_batches += 1
            self.rows_seen += len(self._queue[0])
            DROPPED.inc()
        self._queue.append(rows)
        self._idle.clear()
        self._queued.set()

    async def drain(self) -> None:
        """Wait until every batch queued so far has been evaluated (tests, shutdown)."""
        await self._idle.wait()

    async def _series_loop(self) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            try:
                if self._reload_wanted:
                    await self.reload()
            except Exception:
                log.exception("reloading alert rules failed")
            while self._queue:
                rows = self._queue.popleft()
                try:
                    await self.evaluate_rows(rows)
                except Exception:  # never let one batch end series evaluation
                    log.exception("evaluating a write batch failed")
                self.rows_seen += len(rows)
            if not self._queue:
                self._idle.set()

    async def evaluate_rows(self, rows: Sequence[Any]) -> None:
        """Step the series rules through one committed batch (in memory), then store its transitions
        in order; a transition that cannot be stored rolls its series back (the next batch retries)."""
        async with self._lock:

            def states(rule_id: int) -> dict[str, MachineState] | None:
                entry = self._rules.get(rule_id)
                return entry.states if entry is not None else None

            found, changed = self._index.run(rows, states)
            self._dirty |= changed
            opened: dict[tuple[int, str], int | None] = {}
            failed: set[tuple[int, str]] = set()
            for st in found:
                rule_id, where = st.rule.rule.id, (st.rule.rule.id, st.key)
                entry = self._rules.get(rule_id)
                if entry is None or where in failed:
                    continue
                event_id = st.before.event_id if st.before.event_id is not None else opened.get(where)
                message = describe(st.rule, st.device_id, st.obs.value, st.transition == "firing")
                try:
                    new_id, data = await self._record(
                        entry, st.key, st.device_id, st.after, st.transition, st.obs, message, event_id
                    )
                except Exception as exc:  # one rule's failure (e.g. the database is down) is its own
                    entry.states[st.key] = st.before
                    failed.add(where)
                    self._rule_failed(rule_id, exc)
                    continue
                self.failing_rules.pop(rule_id, None)
                if st.transition == "firing":
                    opened[where] = new_id
                    current = entry.states.get(st.key)
                    if current is not None and current.phase == "firing" and current.event_id is None:
                        entry.states[st.key] = replace(current, event_id=new_id)
                if data is not None:
                    self._deliver(entry.rule, data)

    # -- scheduled rules ---------------------------------------------------------------------------------
    async def _schedule_loop(self) -> None:
        while True:
            try:
                await self.evaluate_scheduled()
            except Exception as exc:  # the database may be down: the next pass tries again
                self.last_pass_error = f"{type(exc).__name__}: {exc}"
                log.exception("alert evaluation pass failed")
            await asyncio.sleep(self.interval)

    async def evaluate_scheduled(self, now: dt.datetime | None = None) -> None:
        """One pass over every scheduled rule at ``now`` (default: the engine's clock)."""
        now = now or self.clock()
        await self._reload_if_changed()
        async with self.pool.acquire() as conn:
            cal = await calendar(conn, self.costs, self.settings.site.timezone, now)
            p = Pass(
                conn=conn,
                now=now,
                settings=self.settings,
                calendar=cal,
                baselines=self._baselines,
                costs=self.costs,
            )
            for rule_id, entry in list(self._rules.items()):
                kind = str(entry.rule.condition.get("type"))
                if kind not in SCHEDULED_KINDS:
                    continue
                try:
                    verdicts = await EVALUATORS[kind](p, entry.rule)
                    for key, device_id, obs in verdicts:
                        await self._observe(rule_id, key, device_id, obs, 0)
                except Exception as exc:  # one bad rule never stops the others
                    self._rule_failed(rule_id, exc)
                else:
                    self.failing_rules.pop(rule_id, None)
        await self.save_states()
        self.last_pass, self.last_pass_error = now, None

    def _rule_failed(self, rule_id: int, exc: BaseException) -> None:
        RULE_ERRORS.inc()
        text = f"{type(exc).__name__}: {exc}"[:300]
        if self.failing_rules.get(rule_id) != text:  # log a rule's failure once, not every pass
            log.error("alert rule %s cannot be evaluated: %s", rule_id, text, exc_info=exc)
        self.failing_rules[rule_id] = text

    # -- the state machine and transitions ----------------------------------------------------------------
    async def _observe(
        self, rule_id: int, key: str, device_id: str | None, obs: Observation, for_seconds: float
    ) -> None:
        """One observation of a scheduled rule's series: step its state, store a transition."""
        async with self._lock:
            entry = self._rules.get(rule_id)
            if entry is None:
                return
            before = entry.states.get(key, MachineState())
            after, transition = step(
                before, obs, for_seconds=for_seconds, cooldown_seconds=entry.rule.cooldown_seconds
            )
            entry.states[key] = after
            if transition is None:
                if (after.phase, after.since) != (before.phase, before.since):
                    self._dirty.add(rule_id)
                return
            try:
                event_id, data = await self._record(
                    entry, key, device_id, after, transition, obs, obs.message, before.event_id
                )
            except Exception:
                entry.states[key] = before  # not stored: the next observation makes the transition again
                raise
            if transition == "firing":
                entry.states[key] = replace(after, event_id=event_id)
        if data is not None:
            self._deliver(entry.rule, data)

    async def _record(
        self,
        entry: _Rule,
        key: str,
        device_id: str | None,
        after: MachineState,
        transition: str,
        obs: Observation,
        message: str,
        event_id: int | None,
    ) -> tuple[int | None, dict[str, Any] | None]:
        """Store one transition with the rule's state as it is right after it (caller holds the lock)."""
        tr = q.TransitionIn(
            rule=entry.rule,
            device_id=device_id,
            state=transition,
            time=obs.time,
            value=obs.value,
            message=message,
            details={"condition": entry.rule.condition},
            rule_state={**{k: v.to_json() for k, v in entry.states.items()}, key: after.to_json()},
            state_key=key,
            due=self.clock(),
            event_id=event_id,
        )
        async with self.pool.acquire() as conn:
            return await q.record_transition(conn, tr)

    def _deliver(self, rule: q.AlertRule, data: dict[str, Any]) -> None:
        TRANSITIONS.labels(data["state"], rule.severity).inc()
        if data["state"] == "firing":
            FIRING.inc()
        elif data["state"] == "resolved":
            FIRING.dec()
        if any(isinstance(t, dict) and t.get("type") == "log" for t in rule.notify):
            log.warning("alert %s %s: %s", rule.name, data["state"], data["message"], extra={"alert": data})
        if self.publish is not None:
            try:
                self.publish(data)
            except Exception:
                log.exception("publishing an alert transition failed")
        if q.webhook_urls(rule.notify):
            self.sender.nudge()

    # -- health ------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "rules": len(self._rules),
            "series_rules": sum(r.rule.condition.get("type") == "threshold" for r in self._rules.values()),
            "firing": sum(s.phase == "firing" for r in self._rules.values() for s in r.states.values()),
            "failing_rules": {str(k): v for k, v in self.failing_rules.items()},
            "queued_batches": len(self._queue),
            "dropped_batches": self.dropped_batches,
            "last_pass": self.last_pass.isoformat() if self.last_pass else None,
            "last_pass_error": self.last_pass_error,
            "interval_seconds": self.interval,
        }

    async def webhook_backlog(self) -> dict[str, int]:
        """Webhook deliveries waiting, retrying, and given up in the last day (for /health)."""
        return await q.delivery_backlog(self.pool, self.clock() - dt.timedelta(days=1))


def webhook_options(settings: Settings) -> WebhookOptions:
    a = settings.alerts
    return WebhookOptions(
        timeout=a.webhook_timeout,
        max_attempts=a.webhook_max_attempts,
        backoff_initial=a.webhook_backoff_initial,
        backoff_max=a.webhook_backoff_max,
    )
