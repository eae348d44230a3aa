"""python-triage: a riposte rule in Python.

For a new Malop (status UNREAD or TODO) whose priority is at least `min-priority` (default HIGH),
add a comment that summarises it for the analyst (detection and activity types, root causes,
machines connected and offline, suspects, files to remediate) and set its status to OPEN, so it
shows up as being handled. Malops an analyst already touched (OPEN, CLOSED, FP, REOPEN) are left
alone, so the rule never fights a human.

Config (all optional):
- `min-priority`: HIGH (default), MEDIUM or LOW: the lowest priority that is triaged.
- `comment` (bool, default true): add the summary comment.
- `set-open` (bool, default true): set the status to OPEN.

Grants it needs: `add-comment`, `set-status`.
"""

import wit_world
from wit_world.imports import bookkeeping, config, log, plugin, types
from componentize_py_types import Err

RANK = {types.Priority.HIGH: 3, types.Priority.MEDIUM: 2, types.Priority.LOW: 1, types.Priority.UNKNOWN: 0}
NAMES = {"HIGH": types.Priority.HIGH, "MEDIUM": types.Priority.MEDIUM, "LOW": types.Priority.LOW}
UNTRIAGED = (types.ManagementStatus.UNREAD, types.ManagementStatus.TODO)


def _flag(key: str, default: bool) -> bool:
    value = config.get(key)
    if value is None:
        return default
    value = value.strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    return default


def options():
    """The operator's options, from the plugin's config."""
    min_priority = NAMES.get((config.get("min-priority") or "HIGH").strip().upper(), types.Priority.HIGH)
    return {
        "min_priority": min_priority,
        "comment": _flag("comment", True),
        "set_open": _flag("set-open", True),
    }


def summary(malop: types.Malop) -> str:
    """The comment text for `malop`."""
    connected = [m.name for m in malop.machines if m.connected]
    offline = [m.name for m in malop.machines if not m.connected]
    roots = ", ".join(rc.name for rc in malop.root_causes) or "none named"
    parts = [
        f"[riposte triage] {malop.priority.name} priority {malop.detection_type} Malop \"{malop.display_name}\"",
        f"activities: {', '.join(malop.activity_types) or 'none'}",
        f"root cause: {roots}",
        f"machines: {len(malop.machines)} ({len(connected)} connected"
        + (f", offline: {', '.join(offline)}" if offline else "")
        + ")",
        f"suspects: {len(malop.suspects)}, files to remediate: {len(malop.files)}, users: {len(malop.users)}",
    ]
    return "; ".join(parts) + "."


def plan(malop: types.Malop, opts) -> dict:
    """What to do for `malop`: {'comment': str | None, 'set_open': bool}. Pure."""
    triage = (
        malop.management_status in UNTRIAGED
        and RANK[malop.priority] >= RANK[opts["min_priority"]]
    )
    return {
        "comment": summary(malop) if triage and opts["comment"] else None,
        "set_open": triage and opts["set_open"],
    }


def _describe_error(err: Err) -> str:
    value = err.value
    return f"{type(value).__name__.removeprefix('Error_')}: {getattr(value, 'value', value)}"


class WitWorld(wit_world.WitWorld):
    def describe(self) -> plugin.Info:
        return plugin.Info(
            name="python-triage",
            version="0.1.0",
            description="Opens and annotates new high-priority Malops for an analyst (Python)",
            subscription=plugin.Subscription(element_kinds=[], activity_types=[], detection_types=[]),
            interval_seconds=None,
        )

    def on_malop(self, malop: types.Malop) -> None:
        todo = plan(malop, options())
        if todo["comment"] is None and not todo["set_open"]:
            log.log(log.Level.INFO, f"{malop.id}: {malop.priority.name} / {malop.management_status.name}: nothing to triage")
            return
        failure = None
        if todo["comment"] is not None:
            try:
                bookkeeping.add_comment(malop.id, todo["comment"])
                log.log(log.Level.INFO, f"{malop.id}: triage comment added")
            except Err as e:
                log.log(log.Level.WARN, f"{malop.id}: comment refused: {_describe_error(e)}")
                failure = failure or e
        if todo["set_open"]:
            try:
                bookkeeping.set_status(malop.id, types.ManagementStatus.OPEN)
                log.log(log.Level.INFO, f"{malop.id}: status set to OPEN")
            except Err as e:
                log.log(log.Level.WARN, f"{malop.id}: status change refused: {_describe_error(e)}")
                failure = failure or e
        if failure is not None:
            raise failure

    def on_interval(self, now: int) -> None:
        return None
