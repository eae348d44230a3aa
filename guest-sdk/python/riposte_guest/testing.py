"""Records for a rule's unit tests, built without naming every field (the Rust SDK's
`riposte_guest::testing`).

A test names only the fields it is about; every other field gets the default stated here. When
the WIT record grows a field, these helpers give it a default and the tests keep working.

    from riposte_guest import Malop, MalopPart
    from riposte_guest.testing import MalopBuilder, machine, suspect

    record = (
        MalopBuilder("11.-7780537507363356527")
        .activity_types(["RANSOMWARE"])
        .machine(machine("m1", "DESKTOP-1"))
        .machine(machine("m2", "LAPTOP-2", connected=False))
        .suspect(suspect("p1", "locker.exe", "m1"))
        .build()
    )
    rule.on_malop(record)          # the WIT record, as the host hands it to the component
    plan(Malop(record))            # the SDK's Malop, as `Rule.on_malop` receives it

`MalopBuilder.unreadable(...)` gives the Malop as the host offers it when a part could not be
read: `build()` leaves the fields of that part as the host leaves them.
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Tuple

from wit_world.imports import types as _types

Disposition = _types.Disposition
ElementKind = _types.ElementKind
MalopPart = _types.MalopPart
ManagementStatus = _types.ManagementStatus
Priority = _types.Priority


def machine(
    guid: str,
    name: str,
    *,
    connected: bool = True,
    isolated: bool = False,
    os: str = "WINDOWS",
    pylum_id: Optional[str] = None,
) -> _types.Machine:
    """A machine: by default a `WINDOWS` machine whose sensor is connected, not isolated, with
    no `pylum_id`."""
    return _types.Machine(guid=guid, name=name, pylum_id=pylum_id, os=os, connected=connected, isolated=isolated)


def suspect(
    guid: str,
    name: str,
    machine_guid: str,
    *,
    image_sha1: Optional[str] = None,
    autorun_keys: Iterable[Tuple[str, str]] = (),
) -> _types.Suspect:
    """A suspect process on `machine_guid`; `autorun_keys` are `(guid, name)` pairs. By default
    no image hash and no autorun key."""
    return _types.Suspect(
        guid=guid,
        name=name,
        machine_guid=machine_guid,
        image_sha1=image_sha1,
        autorun_keys=[_types.RegistryEntry(guid=g, name=n) for g, n in autorun_keys],
    )


def file_item(
    guid: str, name: str, machine_guid: str, *, md5: Optional[str] = None, sha1: Optional[str] = None
) -> _types.FileItem:
    """A file to remediate on `machine_guid`; by default without hashes."""
    return _types.FileItem(guid=guid, name=name, md5=md5, sha1=sha1, machine_guid=machine_guid)


def receipt(action_id: str, disposition: Disposition, detail: str = "") -> _types.Receipt:
    """The WIT receipt a fake host answers an action with."""
    return _types.Receipt(action_id=action_id, disposition=disposition, detail=detail)


class MalopBuilder:
    """A Malop record. `MalopBuilder(id)` starts from: kind `PROCESS`, empty display name and
    detection type, no activity type, status `UNREAD`, priority `UNKNOWN`, creation and last
    update time 0, no root cause, machine, suspect, file, user, IP address or domain, and every
    part readable. Each setter returns the builder."""

    def __init__(self, malop_id: str):
        self._fields = dict(
            id=malop_id,
            kind=ElementKind.PROCESS,
            display_name="",
            detection_type="",
            activity_types=[],
            management_status=ManagementStatus.UNREAD,
            priority=Priority.UNKNOWN,
            creation_time=0,
            last_update_time=0,
            root_causes=[],
            machines=[],
            suspects=[],
            files=[],
            users=[],
            ip_addresses=[],
            domains=[],
            unreadable=[],
        )

    def _set(self, name: str, value) -> "MalopBuilder":
        self._fields[name] = value
        return self

    def _add(self, name: str, value) -> "MalopBuilder":
        self._fields[name].append(value)
        return self

    def kind(self, kind: ElementKind) -> "MalopBuilder":
        return self._set("kind", kind)

    def display_name(self, name: str) -> "MalopBuilder":
        return self._set("display_name", name)

    def detection_type(self, detection: str) -> "MalopBuilder":
        return self._set("detection_type", detection)

    def activity_types(self, types: Iterable[str]) -> "MalopBuilder":
        """The activity types (replaces any set before)."""
        return self._set("activity_types", list(types))

    def management_status(self, status: ManagementStatus) -> "MalopBuilder":
        return self._set("management_status", status)

    def priority(self, priority: Priority) -> "MalopBuilder":
        return self._set("priority", priority)

    def creation_time(self, ms: int) -> "MalopBuilder":
        return self._set("creation_time", ms)

    def last_update_time(self, ms: int) -> "MalopBuilder":
        return self._set("last_update_time", ms)

    def root_cause(self, name: str, element_type: str, hashes: Iterable[str] = ()) -> "MalopBuilder":
        """Adds a root cause `name` of `element_type` (e.g. `File`) with file `hashes`."""
        return self._add("root_causes", _types.RootCause(name=name, element_type=element_type, hashes=list(hashes)))

    def machine(self, value: _types.Machine) -> "MalopBuilder":
        """Adds a machine (see `machine()`)."""
        return self._add("machines", value)

    def suspect(self, value: _types.Suspect) -> "MalopBuilder":
        """Adds a suspect (see `suspect()`)."""
        return self._add("suspects", value)

    def file(self, value: _types.FileItem) -> "MalopBuilder":
        """Adds a file to remediate (see `file_item()`)."""
        return self._add("files", value)

    def user(self, guid: str, name: str) -> "MalopBuilder":
        return self._add("users", _types.User(guid=guid, name=name))

    def ip_addresses(self, ips: Iterable[str]) -> "MalopBuilder":
        """The remote IP addresses (replaces any set before)."""
        return self._set("ip_addresses", list(ips))

    def domains(self, domains: Iterable[str]) -> "MalopBuilder":
        """The domains (replaces any set before)."""
        return self._set("domains", list(domains))

    def unreadable(self, parts: Iterable[MalopPart]) -> "MalopBuilder":
        """Marks `parts` (`MalopPart` values) as not readable this time (added to any marked
        before)."""
        for part in parts:
            if not isinstance(part, MalopPart):
                raise TypeError(f"{part!r} is not a MalopPart (one of {', '.join(p.name for p in MalopPart)})")
            self._fields["unreadable"].append(part)
        return self

    def build(self) -> _types.Malop:
        """The WIT record. For each unreadable part, its fields are what the host offers
        without it: suspects and files keep guid and name, with `machine_guid` the Malop's
        machine when it has exactly one (else empty) and no hashes or autorun keys (`SUSPECTS`,
        `FILES`); no IP address or domain (`NETWORK`); machines without `pylum_id`, with an empty
        `os` and `connected`/`isolated` false, unknown (`SENSORS`). `unreadable` comes out in
        the WIT's order without duplicates, as the host gives it."""
        f = {k: list(v) if isinstance(v, list) else v for k, v in self._fields.items()}
        parts = sorted(set(f["unreadable"]), key=lambda p: p.value)
        f["unreadable"] = parts
        only = f["machines"][0].guid if len(f["machines"]) == 1 else ""
        if MalopPart.SUSPECTS in parts:
            f["suspects"] = [suspect(s.guid, s.name, only) for s in f["suspects"]]
        if MalopPart.FILES in parts:
            f["files"] = [file_item(x.guid, x.name, only) for x in f["files"]]
        if MalopPart.NETWORK in parts:
            f["ip_addresses"], f["domains"] = [], []
        if MalopPart.SENSORS in parts:
            f["machines"] = [machine(m.guid, m.name, connected=False, os="") for m in f["machines"]]
        return _types.Malop(**f)


__all__: List[str] = ["MalopBuilder", "machine", "suspect", "file_item", "receipt"]
