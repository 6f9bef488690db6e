"""RFC 8684 compliance checker: rule families run as one pipeline observer.

Each family lives in its own module (``analyzer/checker/<family>.py``) and is listed in
``FAMILIES``; importing this package registers every family's rules in :data:`analyzer.rules.RULES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from analyzer.checker.base import Context, Family, LevelLookup
from analyzer.checker.dss import Bus
from analyzer.facts import Fact, FactLog
from analyzer.findings import FindingSink
from analyzer.ingest.segment import Segment
from analyzer.model import Analysis, Subflow
from analyzer.mptcp.datalevel import PacketLevels

# Module names under analyzer.checker, one per catalogue section. A module that does not exist yet
# is skipped, so families can land one at a time.
FAMILY_MODULES = ("opt", "mpc", "join", "dss", "dack", "csum", "close", "addr", "prio", "fallback", "fc", "rst",
                  "fail")  # fmt: skip


def family_classes() -> list[type[Family]]:
    classes: list[type[Family]] = []
    for name in FAMILY_MODULES:
        try:
            module = importlib.import_module(f"analyzer.checker.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"analyzer.checker.{name}":
                raise
            continue
        classes.extend(
            obj for obj in vars(module).values()
            if isinstance(obj, type) and issubclass(obj, Family) and obj is not Family
            and obj.__module__ == module.__name__
        )  # fmt: skip
    return classes


FAMILY_CLASSES = family_classes()
for _family in FAMILY_CLASSES:
    _family.register_rules()


Hook = Callable[[Segment, Subflow, int], None]
_NO_HOOKS: list = []  # type: ignore[type-arg]  # shared empty list, never mutated


class Checker:
    """Pipeline observer running every rule family."""

    def __init__(self, sink: FindingSink, facts: FactLog | None = None) -> None:
        self.ctx = Context(sink)
        self.families = [cls(self.ctx) for cls in FAMILY_CLASSES]
        self.facts = facts  # published by the observing stages; drained before each segment and at the end
        self._by_fact: dict[type, list[Callable[[Fact], None]]] = {}
        for family in self.families:
            for fact_type in family.FACTS:
                self._by_fact.setdefault(fact_type, []).append(family.on_fact)
        self._hooks = [family.on_segment for family in self.families if family.WANTS is None]
        self._by_type: dict[type, list[Hook]] = {}
        self._disabled: list[Family] = []
        self._holders: list[tuple[object, list[str]]] | None = None  # see forget()
        for family in self.families:
            for option_type in family.WANTS or ():
                self._by_type.setdefault(option_type, []).append(family.on_segment)

    def attach_levels(self, packet: PacketLevels, level: LevelLookup) -> None:
        """The pipeline's data levels (analyzer.datalevels): the families read them, never expand."""
        self.ctx.packet = packet
        self.ctx.level = level

    def on_segment(self, seg: Segment, subflow: Subflow, direction: int) -> None:
        ctx = self.ctx
        ctx.last_time = seg.ts
        if self.facts:
            self._judge_facts(seg.frame)
        if subflow.connection is None and not subflow.mptcp_seen:
            return  # plain TCP: no MPTCP rule applies
        wanted: list[Hook] = _NO_HOOKS
        options = seg.options.mptcp if seg.options is not None else _NO_HOOKS
        if options:
            by_type = self._by_type
            for opt in options:
                kind = type(opt)
                hooks = by_type.get(kind)
                if hooks:  # the usual single option needs no list of its own
                    wanted = wanted + [h for h in hooks if h not in wanted] if wanted else hooks
        current: Hook | None = None
        try:
            for current in self._hooks:
                current(seg, subflow, direction)
            for current in wanted:
                current(seg, subflow, direction)
        except Exception as exc:  # a bug in one family must not stop the analysis of the rest
            self._disable(getattr(current, "__self__", None), exc, seg.frame)

    def _judge_facts(self, frame: int | None) -> None:
        facts = self.facts
        assert facts is not None
        by_fact = self._by_fact
        for fact in facts:
            for hook in by_fact.get(type(fact), ()):
                try:
                    hook(fact)
                except Exception as exc:  # see on_segment
                    self._disable(getattr(hook, "__self__", None), exc, frame)
        facts.clear()

    def forget(self, sf: Subflow) -> None:
        """The tracker summarised this half-open subflow (Limits.max_half_open): drop every rule's state for it.

        Families key state by ``id(sf)`` / ``id(conn)`` (and ``sf.id``): once the objects are freed those ids
        can be reused, so stale entries must go, not merely stop growing.
        """
        conn = sf.connection if sf.connection is not None and sf.connection.evicted else None
        ids = {id(sf), id(sf) * 2, id(sf) * 2 + 1}  # and its per-direction keys (fallback, observations)
        if conn is not None:
            ids |= {id(conn), id(conn) * 2, id(conn) * 2 + 1}
        if self._holders is None:
            self._holders = [(h, _container_names(h)) for h in _state_holders(self.ctx, self.families)]
        for holder, names in self._holders:
            _purge(holder, names, ids)
            if isinstance(holder, Bus):  # keyed by subflow numbers (never reused: only memory is at stake)
                for key in (sf.key(0), sf.key(1)):
                    holder.flows.pop(key, None)
                    holder.syn_only.discard(key)
                holder.key_acks.pop(sf.id, None)

    def finish(self, analysis: Analysis) -> None:
        if self.facts:
            self._judge_facts(None)
        for family in self.families:
            if family in self._disabled:
                continue
            try:
                family.finish(analysis)
            except Exception as exc:  # see on_segment
                self._disable(family, exc, None)

    def _disable(self, family: object, exc: Exception, frame: int | None) -> None:
        """Stop one rule family after an internal error, and say so as a finding."""
        if not isinstance(family, Family) or family in self._disabled:
            return
        self._disabled.append(family)
        hook = family.on_segment
        self._hooks = [h for h in self._hooks if h != hook]
        self._by_type = {kind: [h for h in hooks if h != hook] for kind, hooks in self._by_type.items()}
        fact_hook = family.on_fact
        self._by_fact = {kind: [h for h in hooks if h != fact_hook] for kind, hooks in self._by_fact.items()}
        where = f"at frame {frame}" if frame is not None else "at the end of the trace"
        ids = ", ".join(rule.id for rule in family.RULES[:3]) + ("…" if len(family.RULES) > 3 else "")
        self.ctx.sink.add(
            "CHECKER-001",
            f"internal error in the {type(family).__name__} rules ({ids}) {where}: {type(exc).__name__}: {exc}; "
            "those rules were not checked from there on (please report this trace)",
            [frame] if frame is not None else [],
        )


__all__ = ["FAMILY_CLASSES", "Checker", "Context", "Family"]


def _state_holders(ctx: Context, families: list[Family]) -> list[object]:
    """The checker's long-lived state objects: the context, the families and what they hold directly
    (observations, the DSS bus, ...). Per-connection records inside their dicts are not walked."""
    seen: dict[int, object] = {}
    todo: list[object] = [ctx, *families]
    for _depth in range(3):
        found: list[object] = []
        for obj in todo:
            if id(obj) in seen:
                continue
            seen[id(obj)] = obj
            found.extend(value for value in _attributes(obj) if _ours(value))
            shared = getattr(obj, "shared", None)
            if isinstance(shared, dict):
                found.extend(value for value in shared.values() if _ours(value))
        todo = found
    return list(seen.values())


def _names(obj: object) -> list[str]:
    names = list(getattr(obj, "__dict__", {}))
    for cls in type(obj).__mro__:
        slots = getattr(cls, "__slots__", ())
        names.extend([slots] if isinstance(slots, str) else slots)
    return [name for name in names if isinstance(name, str)]


def _attributes(obj: object) -> list[object]:
    return [getattr(obj, name, None) for name in _names(obj)]


def _container_names(obj: object) -> list[str]:
    return [name for name in _names(obj) if isinstance(getattr(obj, name, None), (dict, set))]


def _ours(value: object) -> bool:
    return type(value).__module__.startswith("analyzer.checker") and not isinstance(value, type)


def _purge(holder: object, names: list[str], ids: set[int]) -> None:
    """Remove keys naming the forgotten subflow or connection (by ``id()``) from the holder's dicts and sets."""
    for name in names:
        value = getattr(holder, name, None)
        if isinstance(value, dict):
            for key in ids:
                value.pop(key, None)
                value.pop((key, 0), None)  # (id(conn), side) keys
                value.pop((key, 1), None)
        elif isinstance(value, set):
            value.difference_update(ids)
