"""riposte_guest: write riposte rules in Python the way the Rust SDK does.

A rule is a class deriving from `Rule` with `describe()`, `on_malop(malop)` and optionally
`on_interval(now)`; `WitWorld = export_rule(MyRule)` turns it into the component's exports
(componentize-py loads the module's `WitWorld`). Host calls are grouped by concern
(`isolation`, `remediation`, `reputation`, `bookkeeping`, `malops`, `kv`, `config`); a refused
call raises a typed `RiposteError` (`Denied`, `BudgetExhausted`, `OutOfScope`, ...), and an
action call returns a `Receipt` saying where the action stands (`Receipt.into_result` raises
the typed error for one that ended without effect). `Malop.lacks(part)` tells a part the host
could not read (`MalopPart`). `riposte_guest.testing` builds records for a rule's unit tests.

`riposte plugin build` puts this package on componentize-py's path; the WIT bindings it wraps
(`wit_world`) are generated from the host's wit/ at each build.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Optional, Sequence, TypeVar

import wit_world
from wit_world.imports import bookkeeping as _bookkeeping
from wit_world.imports import config as _config
from wit_world.imports import isolation as _isolation
from wit_world.imports import kv as _kv
from wit_world.imports import log as _log
from wit_world.imports import malops as _malops
from wit_world.imports import plugin as _plugin
from wit_world.imports import remediation as _remediation
from wit_world.imports import reputation as _reputation
from wit_world.imports import types as _types
from componentize_py_types import Err

ElementKind = _types.ElementKind
ManagementStatus = _types.ManagementStatus
Priority = _types.Priority
MalopPart = _types.MalopPart
Disposition = _types.Disposition
ActionKind = _remediation.ActionKind
Target = _remediation.Target
KeyKind = _reputation.KeyKind
ReputationKey = _reputation.ReputationKey
Verdict = _reputation.Verdict
Level = _log.Level


def wit_name(value) -> str:
    """The WIT spelling of an enum value: `MalopPart.SUSPECTS` is `suspects`,
    `Disposition.OUTCOME_UNKNOWN` is `outcome-unknown`."""
    return value.name.lower().replace("_", "-")


# ---------------------------------------------------------------------------------------------
# Errors

# The WIT `error` variant's cases, by kebab-case name, as componentize-py generates them.
_WIT_ERRORS = {
    "denied": _types.Error_Denied,
    "budget-exhausted": _types.Error_BudgetExhausted,
    "protected-target": _types.Error_ProtectedTarget,
    "not-found": _types.Error_NotFound,
    "server-error": _types.Error_ServerError,
    "invalid-argument": _types.Error_InvalidArgument,
    "failed": _types.Error_Failed,
    "out-of-scope": _types.Error_OutOfScope,
    "quota-exceeded": _types.Error_QuotaExceeded,
}
_POLICY = frozenset(("denied", "budget-exhausted", "protected-target", "out-of-scope", "quota-exceeded"))


class RiposteError(Exception):
    """Why a host call did not happen, or the rule's own failure: the WIT `error` variant."""

    kind = "failed"

    def __init__(self, detail: str):
        super().__init__(f"{self.kind}: {detail}")
        self.detail = str(detail)

    @property
    def is_policy(self) -> bool:
        """Whether the host's policy refused the call (denied, budget, protected target, out of
        scope, quota): the rule may want to log it and carry on with its other actions."""
        return self.kind in _POLICY

    def to_wit(self) -> Err:
        """The `Err` componentize-py returns to the host when the rule raises this."""
        return Err(_WIT_ERRORS[self.kind](self.detail))


class Denied(RiposteError):
    """The operator did not grant this operation or action kind."""

    kind = "denied"


class BudgetExhausted(RiposteError):
    """An action budget is spent, or a target is cooling down."""

    kind = "budget-exhausted"


class ProtectedTarget(RiposteError):
    """The target is a protected asset."""

    kind = "protected-target"


class NotFound(RiposteError):
    """The Malop, machine or action does not exist."""

    kind = "not-found"


class ServerError(RiposteError):
    """The Cybereason server failed or answered something unusable."""

    kind = "server-error"


class InvalidArgument(RiposteError):
    """The arguments are malformed."""

    kind = "invalid-argument"


class Failed(RiposteError):
    """The rule's own failure."""

    kind = "failed"


class OutOfScope(RiposteError):
    """The target is not one the Malop being handled names (or the call comes from
    `on_interval`), and the operator granted no wider scope."""

    kind = "out-of-scope"


class QuotaExceeded(RiposteError):
    """A quota that protects the host or the server is spent (queries, argument sizes, kv
    writes)."""

    kind = "quota-exceeded"


_CLASSES = {
    cls.kind: cls
    for cls in (
        Denied, BudgetExhausted, ProtectedTarget, NotFound, ServerError, InvalidArgument, Failed, OutOfScope,
        QuotaExceeded,
    )
}


def error_from_wit(err: Err) -> RiposteError:
    """The typed error for the `Err` a WIT import raised."""
    value = err.value
    for kind, case in _WIT_ERRORS.items():
        if isinstance(value, case):
            return _CLASSES[kind](value.value)
    return Failed(repr(value))


T = TypeVar("T")


def _call(fn: Callable[..., T], *args) -> T:
    try:
        return fn(*args)
    except Err as err:
        raise error_from_wit(err) from None


# ---------------------------------------------------------------------------------------------
# Describe


class Info:
    """What the rule tells the host about itself; build it with the chained setters."""

    def __init__(self, name: str, version: str):
        self.name = name
        self.version = version
        self._description = ""
        self._element_kinds: List[ElementKind] = []
        self._activity_types: List[str] = []
        self._detection_types: List[str] = []
        self._interval_seconds: Optional[int] = None

    def description(self, text: str) -> "Info":
        """Sets the one-line description."""
        self._description = text
        return self

    def activity_types(self, types: Iterable[str]) -> "Info":
        """Subscribes to Malops with any of these activity types (e.g. `RANSOMWARE`)."""
        self._activity_types = list(types)
        return self

    def detection_types(self, types: Iterable[str]) -> "Info":
        """Subscribes to Malops with any of these detection types (e.g. `KNOWN_MALWARE`)."""
        self._detection_types = list(types)
        return self

    def element_kinds(self, kinds: Iterable[ElementKind]) -> "Info":
        """Subscribes to Malops of these element kinds only."""
        self._element_kinds = list(kinds)
        return self

    def interval_seconds(self, seconds: int) -> "Info":
        """Asks for `on_interval` every `seconds` seconds."""
        self._interval_seconds = seconds
        return self

    def to_wit(self) -> _plugin.Info:
        """The WIT record."""
        return _plugin.Info(
            name=self.name,
            version=self.version,
            description=self._description,
            subscription=_plugin.Subscription(
                element_kinds=list(self._element_kinds),
                activity_types=list(self._activity_types),
                detection_types=list(self._detection_types),
            ),
            interval_seconds=self._interval_seconds,
        )


# ---------------------------------------------------------------------------------------------
# The Malop


class Malop:
    """A Malop as the host offers it (every WIT field, snake_case), with helpers."""

    def __init__(self, record: _types.Malop):
        self.record = record

    def __getattr__(self, name: str):
        return getattr(self.record, name)

    def has_activity(self, activity: str) -> bool:
        """Whether the Malop has activity type `activity` (case-insensitive)."""
        return any(a.upper() == activity.upper() for a in self.record.activity_types)

    def is_detection(self, detection: str) -> bool:
        """Whether the detection type is `detection` (case-insensitive)."""
        return self.record.detection_type.upper() == detection.upper()

    def is_ransomware(self) -> bool:
        """Whether an activity or the detection type names ransomware."""
        return any("RANSOMWARE" in t.upper() for t in [*self.record.activity_types, self.record.detection_type])

    def is_logon_session(self) -> bool:
        """Whether this is a MalopLogonSession (lateral movement, credential theft)."""
        return self.record.kind == ElementKind.LOGON_SESSION

    def is_closed(self) -> bool:
        """Whether an analyst closed the Malop or marked it a false positive."""
        return self.record.management_status in (ManagementStatus.CLOSED, ManagementStatus.FALSE_POSITIVE)

    def connected_machines(self) -> List[_types.Machine]:
        """The affected machines whose sensor is connected now."""
        return [m for m in self.record.machines if m.connected]

    def offline_machines(self) -> List[_types.Machine]:
        """The affected machines whose sensor is not connected now."""
        return [m for m in self.record.machines if not m.connected]

    def machine(self, guid: str) -> Optional[_types.Machine]:
        """The machine with element guid `guid`, or None."""
        return next((m for m in self.record.machines if m.guid == guid), None)

    def is_connected(self, guid: str) -> bool:
        """Whether machine `guid` is one of the Malop's and connected."""
        found = self.machine(guid)
        return found is not None and found.connected

    def suspects_on(self, machine_guid: str) -> List[_types.Suspect]:
        """The suspects on machine `machine_guid`."""
        return [s for s in self.record.suspects if s.machine_guid == machine_guid]

    def suspects_by_machine(self) -> Dict[str, List[_types.Suspect]]:
        """The suspects grouped by machine guid, in the order machines first appear."""
        out: Dict[str, List[_types.Suspect]] = {}
        for s in self.record.suspects:
            out.setdefault(s.machine_guid, []).append(s)
        return out

    def guids_of(self, machines: Sequence[_types.Machine]) -> List[str]:
        """The machine guids of `machines`, as the isolation calls take them."""
        return [m.guid for m in machines]

    def user_names(self) -> List[str]:
        """The affected users' names, without duplicates, in order."""
        return list(dict.fromkeys(u.name for u in self.record.users if u.name.strip()))

    def root_cause_hashes(self) -> List[str]:
        """Every root-cause file hash, lower-cased, without duplicates, in order."""
        hashes = (h.strip().lower() for rc in self.record.root_causes for h in rc.hashes)
        return list(dict.fromkeys(h for h in hashes if h))

    def is_complete(self) -> bool:
        """Whether every part of the Malop could be read (see `MalopPart`)."""
        return not self.record.unreadable

    def lacks(self, part: "MalopPart") -> bool:
        """Whether `part` could not be read this time: its fields hold only what crimes/unified
        gave. The host offers the Malop again once the part can be read."""
        return part in self.record.unreadable


# ---------------------------------------------------------------------------------------------
# Receipts


class Receipt:
    """The host's answer to an accepted action: `action_id`, `disposition` (where the action
    stands) and `detail` (why it failed, timed out or was refused; empty otherwise)."""

    def __init__(self, record: _types.Receipt):
        self.record = record

    def __getattr__(self, name: str):
        return getattr(self.record, name)

    def __eq__(self, other) -> bool:
        return isinstance(other, Receipt) and self.record == other.record

    def __repr__(self) -> str:
        return f"Receipt({self.record!r})"

    def __str__(self) -> str:
        """`<action-id> (<disposition>)`, with the detail when there is one."""
        text = f"{self.record.action_id} ({wit_name(self.record.disposition)})"
        return f"{text}: {self.record.detail}" if self.record.detail else text

    def ended_without_effect(self) -> bool:
        """Whether the action failed, an operator denied it, or its approval expired."""
        return self.record.disposition in (Disposition.FAILED, Disposition.DENIED, Disposition.EXPIRED)

    def error(self) -> Optional[RiposteError]:
        """The typed error for an action that ended without effect (`ServerError` for a
        failure, `Denied` for an operator's refusal or an expired approval); None otherwise."""
        why = {
            Disposition.FAILED: (ServerError, "failed"),
            Disposition.DENIED: (Denied, "was denied by an operator"),
            Disposition.EXPIRED: (Denied, "expired before approval"),
        }.get(self.record.disposition)
        if why is None:
            return None
        cls, what = why
        return cls(f"action {self.record.action_id} {what}: {self.record.detail}")

    def into_result(self) -> "Receipt":
        """This receipt, or raises `error()` when the action ended without effect, so a rule
        can write `isolation.isolate(...).into_result()`."""
        failure = self.error()
        if failure is not None:
            raise failure
        return self


# ---------------------------------------------------------------------------------------------
# Targets and keys


def kill(suspect: _types.Suspect) -> Target:
    """The target that kills `suspect` on its machine."""
    return Target(machine_guid=suspect.machine_guid, target_guid=suspect.guid, kind=ActionKind.KILL_PROCESS)


def quarantine(file: _types.FileItem) -> Target:
    """The target that quarantines `file` on its machine."""
    return Target(machine_guid=file.machine_guid, target_guid=file.guid, kind=ActionKind.QUARANTINE_FILE)


def file_hash_key(value: str) -> ReputationKey:
    """A file-hash reputation key, lower-cased."""
    return ReputationKey(kind=KeyKind.FILE_HASH, value=value.strip().lower())


def ip_key(value: str) -> ReputationKey:
    """An IP-address reputation key."""
    return ReputationKey(kind=KeyKind.IP_ADDRESS, value=value.strip())


def domain_key(value: str) -> ReputationKey:
    """A domain reputation key, lower-cased, without a trailing dot."""
    return ReputationKey(kind=KeyKind.DOMAIN, value=value.strip().rstrip(".").lower())


# ---------------------------------------------------------------------------------------------
# Host calls


class malops:
    """Reading Malops."""

    @staticmethod
    def list_malops(since: int, until: int) -> List[Malop]:
        return [Malop(m) for m in _call(_malops.list_malops, since, until)]

    @staticmethod
    def get_malop(malop_id: str) -> Malop:
        return Malop(_call(_malops.get_malop, malop_id))


class remediation:
    """Remediating items of a Malop; returns the host's `Receipt`."""

    @staticmethod
    def remediate(malop_id: Optional[str], targets: List[Target], reason: str) -> Receipt:
        return Receipt(_call(_remediation.remediate, malop_id, targets, reason))

    @staticmethod
    def status(action_id: str) -> _remediation.Progress:
        return _call(_remediation.status, action_id)


class isolation:
    """Network isolation of machines, by machine element guid; returns the host's `Receipt`."""

    @staticmethod
    def isolate(malop_id: Optional[str], machine_guids: List[str], reason: str) -> Receipt:
        return Receipt(_call(_isolation.isolate, malop_id, machine_guids, reason))

    @staticmethod
    def unisolate(malop_id: Optional[str], machine_guids: List[str], reason: str) -> Receipt:
        return Receipt(_call(_isolation.unisolate, malop_id, machine_guids, reason))


class reputation:
    """Custom reputations; returns the host's `Receipt`."""

    @staticmethod
    def set_reputation(keys: List[ReputationKey], verdict: Verdict, prevent: bool, reason: str) -> Receipt:
        return Receipt(_call(_reputation.set_reputation, keys, verdict, prevent, reason))

    @staticmethod
    def remove_reputation(keys: List[ReputationKey], reason: str) -> Receipt:
        return Receipt(_call(_reputation.remove_reputation, keys, reason))


class bookkeeping:
    """Malop status and comments."""

    @staticmethod
    def set_status(malop_id: str, status: ManagementStatus) -> None:
        _call(_bookkeeping.set_status, malop_id, status)

    @staticmethod
    def add_comment(malop_id: str, text: str) -> None:
        _call(_bookkeeping.add_comment, malop_id, text)


class kv:
    """The plugin's key-value store, kept across invocations."""

    @staticmethod
    def get(key: str) -> Optional[bytes]:
        return _kv.get(key)

    @staticmethod
    def set(key: str, value: bytes) -> None:
        _call(_kv.set, key, value)

    @staticmethod
    def delete(key: str) -> None:
        _kv.delete(key)

    @staticmethod
    def get_string(key: str) -> Optional[str]:
        """`key` as UTF-8 text; None when absent or not UTF-8."""
        value = _kv.get(key)
        try:
            return None if value is None else bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None

    @staticmethod
    def set_string(key: str, value: str) -> None:
        _call(_kv.set, key, value.encode("utf-8"))


def split_list(value: str) -> List[str]:
    """Splits a comma-separated list, trimming items and dropping empty ones."""
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_flag(value: str) -> Optional[bool]:
    """`true`/`yes`/`on`/`1` or `false`/`no`/`off`/`0` (any case); None otherwise."""
    v = value.strip().lower()
    if v in ("true", "yes", "on", "1"):
        return True
    if v in ("false", "no", "off", "0"):
        return False
    return None


class config:
    """The operator's configuration values for this plugin."""

    @staticmethod
    def get(key: str) -> Optional[str]:
        return _config.get(key)

    @staticmethod
    def all() -> List[tuple]:
        return _config.all()

    @staticmethod
    def get_or(key: str, default: str) -> str:
        value = _config.get(key)
        return default if value is None else value

    @staticmethod
    def list(key: str) -> List[str]:
        return split_list(_config.get(key) or "")

    @staticmethod
    def flag(key: str, default: bool) -> bool:
        value = _config.get(key)
        parsed = None if value is None else parse_flag(value)
        return default if parsed is None else parsed


# ---------------------------------------------------------------------------------------------
# Logging


def log(level: Level, message: str) -> None:
    """Writes `message` at `level`."""
    _log.log(level, str(message))


def trace(message: str) -> None:
    log(Level.TRACE, message)


def debug(message: str) -> None:
    log(Level.DEBUG, message)


def info(message: str) -> None:
    log(Level.INFO, message)


def warn(message: str) -> None:
    log(Level.WARN, message)


def error(message: str) -> None:
    log(Level.ERROR, message)


# ---------------------------------------------------------------------------------------------
# The rule


class Rule:
    """A detection-to-remediation rule. Each call runs in a fresh instance: keep state in `kv`."""

    def describe(self) -> Info:
        raise Failed(f"{type(self).__name__} does not implement describe()")

    def on_malop(self, malop: Malop) -> None:
        """Handles one new or changed Malop; raise a `RiposteError` to report a failure."""

    def on_interval(self, now: int) -> None:
        """The periodic hook; `now` is ms since the epoch. Does nothing by default."""


def _failure(exc: BaseException) -> Err:
    if isinstance(exc, RiposteError):
        return exc.to_wit()
    if isinstance(exc, Err):
        return exc
    return Failed(f"{type(exc).__name__}: {exc}").to_wit()


def export_rule(rule_class: type) -> type:
    """The `WitWorld` class componentize-py exports for a `Rule` subclass:
    `WitWorld = export_rule(MyRule)`."""
    rule = rule_class()

    def guard(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # the rule's failure, reported to the host as `Err`
            raise _failure(exc) from None

    class Exported(wit_world.WitWorld):
        def describe(self) -> _plugin.Info:
            described = rule.describe()
            return described.to_wit() if isinstance(described, Info) else described

        def on_malop(self, malop: _types.Malop) -> None:
            guard(lambda: rule.on_malop(Malop(malop)))

        def on_interval(self, now: int) -> None:
            guard(lambda: rule.on_interval(now))

    Exported.__name__ = Exported.__qualname__ = "WitWorld"
    return Exported
