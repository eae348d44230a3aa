"""python-triage: a riposte rule in Python, on the Python guest SDK (riposte_guest).

For a new Malop (status UNREAD or TODO) whose priority is at least `min-priority` (default HIGH),
add a comment that summarises it for the analyst (detection and activity types, root causes,
machines connected and offline, suspects, files to remediate) and set its status to OPEN, so it
shows up as being handled. Malops an analyst already touched (OPEN, CLOSED, FP, REOPEN) are left
alone, so the rule never fights a human.

A Malop the host could not read in full (`malop.unreadable`: no investigation rights, say) is
triaged with what there is: the comment names the parts not readable yet, and says the sensor
state is unknown rather than calling every machine offline. With `set-open` on, the Malop the
host offers again once it is complete is OPEN by then and left alone: one comment per Malop.

Config (all optional):
- `min-priority`: HIGH (default), MEDIUM or LOW: the lowest priority that is triaged.
- `comment` (bool, default true): add the summary comment.
- `set-open` (bool, default true): set the status to OPEN.

Grants it needs: `add-comment`, `set-status`.
"""

from riposte_guest import (
    Info,
    Malop,
    MalopPart,
    ManagementStatus,
    Priority,
    RiposteError,
    Rule,
    bookkeeping,
    config,
    export_rule,
    info,
    warn,
    wit_name,
)

RANK = {Priority.HIGH: 3, Priority.MEDIUM: 2, Priority.LOW: 1, Priority.UNKNOWN: 0}
NAMES = {"HIGH": Priority.HIGH, "MEDIUM": Priority.MEDIUM, "LOW": Priority.LOW}
UNTRIAGED = (ManagementStatus.UNREAD, ManagementStatus.TODO)


def options():
    """The operator's options, from the plugin's config."""
    return {
        "min_priority": NAMES.get(config.get_or("min-priority", "HIGH").strip().upper(), Priority.HIGH),
        "comment": config.flag("comment", True),
        "set_open": config.flag("set-open", True),
    }


def summary(malop: Malop) -> str:
    """The comment text for `malop`."""
    connected = [m.name for m in malop.connected_machines()]
    offline = [m.name for m in malop.offline_machines()]
    roots = ", ".join(rc.name for rc in malop.root_causes) or "none named"
    if malop.lacks(MalopPart.SENSORS):
        machines = f"machines: {len(malop.machines)} (sensor state not readable)"
    else:
        machines = (
            f"machines: {len(malop.machines)} ({len(connected)} connected"
            + (f", offline: {', '.join(offline)}" if offline else "")
            + ")"
        )
    parts = [
        f"[riposte triage] {malop.priority.name} priority {malop.detection_type} Malop \"{malop.display_name}\"",
        f"activities: {', '.join(malop.activity_types) or 'none'}",
        f"root cause: {roots}",
        machines,
        f"suspects: {len(malop.suspects)}, files to remediate: {len(malop.files)}, users: {len(malop.users)}",
    ]
    if not malop.is_complete():
        parts.append("not readable yet: " + ", ".join(wit_name(p) for p in malop.unreadable))
    return "; ".join(parts) + "."


def plan(malop: Malop, opts) -> dict:
    """What to do for `malop`: {'comment': str | None, 'set_open': bool}. Pure."""
    triage = malop.management_status in UNTRIAGED and RANK[malop.priority] >= RANK[opts["min_priority"]]
    return {
        "comment": summary(malop) if triage and opts["comment"] else None,
        "set_open": triage and opts["set_open"],
    }


class Triage(Rule):
    def describe(self) -> Info:
        return Info("python-triage", "0.1.0").description(
            "Opens and annotates new high-priority Malops for an analyst (Python)"
        )

    def on_malop(self, malop: Malop) -> None:
        todo = plan(malop, options())
        if todo["comment"] is None and not todo["set_open"]:
            info(f"{malop.id}: {malop.priority.name} / {malop.management_status.name}: nothing to triage")
            return
        failure = None
        if todo["comment"] is not None:
            try:
                bookkeeping.add_comment(malop.id, todo["comment"])
                info(f"{malop.id}: triage comment added")
            except RiposteError as e:
                warn(f"{malop.id}: comment refused: {e}")
                failure = failure or e
        if todo["set_open"]:
            try:
                bookkeeping.set_status(malop.id, ManagementStatus.OPEN)
                info(f"{malop.id}: status set to OPEN")
            except RiposteError as e:
                warn(f"{malop.id}: status change refused: {e}")
                failure = failure or e
        if failure is not None:
            raise failure


WitWorld = export_rule(Triage)
