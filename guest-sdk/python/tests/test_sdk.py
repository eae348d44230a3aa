"""Tests of riposte_guest (Python) under CPython, against the WIT bindings componentize-py
generates from the repository's wit/ (the same types a built plugin sees), with the imported
functions replaced by a recording fake host.

Run: `python3 -m unittest discover -s guest-sdk/python/tests` (tests/run.sh does). Needs
componentize-py 0.25.1: `riposte plugin build` installs it into target/plugin-build/python-venv,
or set RIPOSTE_COMPONENTIZE_PY to one.
"""

import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SDK = ROOT / "guest-sdk" / "python"


def componentize_py() -> str:
    found = os.environ.get("RIPOSTE_COMPONENTIZE_PY") or str(ROOT / "target/plugin-build/python-venv/bin/componentize-py")
    if not Path(found).is_file() and shutil.which(found) is None:
        raise RuntimeError(
            f"componentize-py is not at {found}: run `cargo run -p riposte -- plugin build` (it installs it), "
            "or set RIPOSTE_COMPONENTIZE_PY"
        )
    return found


def setUpModule():
    global BINDINGS, sdk, testing, wit_types, imports, Err
    BINDINGS = tempfile.mkdtemp(prefix="riposte-py-bindings-")
    subprocess.run(
        [componentize_py(), "-d", str(ROOT / "wit"), "-w", "rule", "bindings", BINDINGS],
        check=True,
        capture_output=True,
    )
    sys.path[:0] = [BINDINGS, str(SDK), str(ROOT / "plugins" / "python-triage")]
    sdk = importlib.import_module("riposte_guest")
    testing = importlib.import_module("riposte_guest.testing")
    wit_types = importlib.import_module("wit_world.imports.types")
    imports = importlib.import_module("wit_world.imports")
    Err = importlib.import_module("componentize_py_types").Err


def tearDownModule():
    shutil.rmtree(BINDINGS, ignore_errors=True)


class FakeHost:
    """Replaces the imported WIT functions with recorders answering from `answers`."""

    FUNCTIONS = {
        "malops": ["list_malops", "get_malop"],
        "remediation": ["remediate", "status"],
        "isolation": ["isolate", "unisolate"],
        "reputation": ["set_reputation", "remove_reputation"],
        "bookkeeping": ["set_status", "add_comment"],
        "log": ["log"],
        "kv": ["get", "set", "delete"],
        "config": ["get", "all"],
    }

    def __init__(self, test: unittest.TestCase, answers=None):
        self.calls = []
        self.answers = answers or {}
        for iface, functions in self.FUNCTIONS.items():
            module = importlib.import_module(f"wit_world.imports.{iface}")
            for fn in functions:
                original = getattr(module, fn)
                setattr(module, fn, self._recorder(f"{iface}.{fn}"))
                test.addCleanup(setattr, module, fn, original)

    def _recorder(self, name):
        def record(*args):
            self.calls.append((name, args))
            answer = self.answers.get(name)
            return answer(*args) if answer else None

        return record

    def actions(self):
        return [c for c in self.calls if c[0] != "log.log"]

ID = "11.-7780537507363356527"


def malware():
    """A builder of a high-priority, unread KNOWN_MALWARE Malop."""
    return (
        testing.MalopBuilder(ID)
        .display_name("evil.exe")
        .detection_type("KNOWN_MALWARE")
        .activity_types(["MALICIOUS_INFECTION"])
        .priority(wit_types.Priority.HIGH)
    )


def two_machines():
    """`malware()` on a connected machine 1.1 and an offline one 2.2."""
    return malware().machine(testing.machine("1.1", "DESKTOP-1")).machine(
        testing.machine("2.2", "LAPTOP-2", connected=False)
    )


class SdkTest(unittest.TestCase):
    def test_the_fake_covers_every_imported_function(self):
        for iface, functions in FakeHost.FUNCTIONS.items():
            module = importlib.import_module(f"wit_world.imports.{iface}")
            declared = sorted(
                name for name, value in vars(module).items()
                if callable(value) and getattr(value, "__module__", "") == module.__name__ and not isinstance(value, type)
            )
            self.assertEqual(declared, sorted(functions), iface)

    def test_malop_helpers(self):
        m = sdk.Malop(
            two_machines()
            .activity_types(["Ransomware"])
            .suspect(testing.suspect("s1", "x.exe", "1.1"))
            .suspect(testing.suspect("s2", "y.exe", "2.2"))
            .suspect(testing.suspect("s3", "z.exe", "1.1"))
            .user("u1", "corp\\alice")
            .user("u2", "corp\\alice")
            .user("u3", "bob")
            .root_cause("x", "File", ["ABC", "abc", " def "])
            .build()
        )
        self.assertTrue(m.has_activity("RANSOMWARE") and m.is_ransomware() and not m.is_logon_session())
        self.assertEqual(m.guids_of(m.connected_machines()), ["1.1"])
        self.assertEqual(m.guids_of(m.offline_machines()), ["2.2"])
        self.assertTrue(m.is_connected("1.1") and not m.is_connected("2.2") and not m.is_connected("9.9"))
        self.assertEqual([s.guid for s in m.suspects_on("1.1")], ["s1", "s3"])
        self.assertEqual({g: len(s) for g, s in m.suspects_by_machine().items()}, {"1.1": 2, "2.2": 1})
        self.assertEqual(m.user_names(), ["corp\\alice", "bob"])
        self.assertEqual(m.root_cause_hashes(), ["abc", "def"])
        self.assertEqual(m.id, ID)  # WIT fields pass through
        self.assertTrue(m.is_complete() and not m.lacks(sdk.MalopPart.SUSPECTS))
        target = sdk.kill(m.suspects[0])
        self.assertEqual((target.machine_guid, target.target_guid, target.kind), ("1.1", "s1", sdk.ActionKind.KILL_PROCESS))
        self.assertEqual(sdk.domain_key("Evil.Example.").value, "evil.example")
        closed = malware().management_status(wit_types.ManagementStatus.FALSE_POSITIVE).build()
        self.assertTrue(sdk.Malop(closed).is_closed())

    def test_the_builder_defaults_to_a_complete_unread_process_malop(self):
        m = testing.MalopBuilder("11.1").build()
        self.assertEqual((m.id, m.kind, m.management_status, m.priority), (
            "11.1", wit_types.ElementKind.PROCESS, wit_types.ManagementStatus.UNREAD, wit_types.Priority.UNKNOWN,
        ))
        self.assertEqual((m.machines, m.suspects, m.files, m.users, m.unreadable), ([], [], [], [], []))
        machine = testing.machine("m1", "a")
        self.assertEqual((machine.connected, machine.isolated, machine.os, machine.pylum_id), (True, False, "WINDOWS", None))

    def test_a_partly_read_malop_is_built_as_the_host_offers_it(self):
        P = sdk.MalopPart
        full = (
            two_machines()
            .suspect(testing.suspect("p1", "x.exe", "1.1", image_sha1="ab", autorun_keys=[("r1", "Run\\x")]))
            .file(testing.file_item("f1", "x.exe", "2.2", md5="cd", sha1="ef"))
            .ip_addresses(["1.2.3.4"])
            .domains(["evil.example"])
        )
        m = sdk.Malop(full.unreadable([P.SENSORS, P.SUSPECTS]).unreadable([P.FILES, P.NETWORK, P.SUSPECTS]).build())
        self.assertEqual(m.unreadable, [P.SUSPECTS, P.FILES, P.NETWORK, P.SENSORS])
        self.assertFalse(m.is_complete())
        self.assertTrue(all(m.lacks(p) for p in P))
        self.assertEqual([sdk.wit_name(p) for p in m.unreadable], ["suspects", "files", "network", "sensors"])
        self.assertEqual(m.suspects, [testing.suspect("p1", "x.exe", "")])
        self.assertEqual(m.files, [testing.file_item("f1", "x.exe", "")])
        self.assertEqual((m.ip_addresses, m.domains), ([], []))
        self.assertEqual(m.machines, [
            testing.machine("1.1", "DESKTOP-1", connected=False, os=""),
            testing.machine("2.2", "LAPTOP-2", connected=False, os=""),
        ])
        one = (
            malware()
            .machine(testing.machine("1.1", "DESKTOP-1"))
            .suspect(testing.suspect("p1", "x.exe", "elsewhere"))
            .unreadable([P.SUSPECTS])
            .build()
        )
        self.assertEqual(one.suspects[0].machine_guid, "1.1", "a Malop with one machine places its suspects there")
        self.assertTrue(one.machines[0].connected, "the sensors were read")

    def test_a_refused_call_raises_the_typed_error(self):
        def refuse(*_):
            raise Err(wit_types.Error_BudgetExhausted("isolations per hour: 0 left"))

        host = FakeHost(self, {"isolation.isolate": refuse})
        with self.assertRaises(sdk.BudgetExhausted) as caught:
            sdk.isolation.isolate("11.1", ["1.1"], "why")
        error = caught.exception
        self.assertIsInstance(error, sdk.RiposteError)
        self.assertEqual((error.kind, error.detail, error.is_policy), ("budget-exhausted", "isolations per hour: 0 left", True))
        self.assertEqual(host.calls, [("isolation.isolate", ("11.1", ["1.1"], "why"))])
        wit = sdk.NotFound("no such Malop").to_wit()
        self.assertIsInstance(wit, Err)
        self.assertEqual(wit.value, wit_types.Error_NotFound("no such Malop"))

    def test_every_wit_error_has_its_typed_class(self):
        cases = {name: value for name, value in vars(wit_types).items() if name.startswith("Error_")}
        self.assertEqual(len(cases), 9, sorted(cases))
        policy = set()
        for name, case in cases.items():
            typed = sdk.error_from_wit(Err(case("why")))
            self.assertIsInstance(typed, sdk.RiposteError, name)
            self.assertEqual(type(typed).__name__, name[len("Error_"):], name)
            self.assertEqual(typed.to_wit().value, case("why"), name)
            if typed.is_policy:
                policy.add(typed.kind)
        self.assertEqual(policy, {"denied", "budget-exhausted", "protected-target", "out-of-scope", "quota-exceeded"})
        FakeHost(self, {"isolation.isolate": lambda *_: (_ for _ in ()).throw(Err(wit_types.Error_OutOfScope("m9 is not on 11.1")))})
        with self.assertRaises(sdk.OutOfScope) as caught:
            sdk.isolation.isolate("11.1", ["m9"], "why")
        self.assertEqual(str(caught.exception), "out-of-scope: m9 is not on 11.1")

    def test_receipts_say_where_the_action_stands(self):
        D = sdk.Disposition
        ended = {
            D.FAILED: (sdk.ServerError, "action a1 failed: sensor disconnected"),
            D.DENIED: (sdk.Denied, "action a1 was denied by an operator: sensor disconnected"),
            D.EXPIRED: (sdk.Denied, "action a1 expired before approval: sensor disconnected"),
        }
        for disposition in D:
            answer = testing.receipt("a1", disposition, "sensor disconnected")
            FakeHost(self, {"isolation.isolate": lambda *_: answer})
            receipt = sdk.isolation.isolate("11.1", ["1.1"], "why")
            self.assertIsInstance(receipt, sdk.Receipt)
            self.assertEqual((receipt.action_id, receipt.disposition, receipt.detail), ("a1", disposition, "sensor disconnected"))
            self.assertEqual(str(receipt), f"a1 ({sdk.wit_name(disposition)}): sensor disconnected")
            self.assertEqual(receipt.ended_without_effect(), disposition in ended, disposition)
            if disposition in ended:
                cls, message = ended[disposition]
                with self.assertRaises(cls) as caught:
                    receipt.into_result()
                self.assertEqual(caught.exception.detail, message)
                self.assertIsInstance(receipt.error(), cls)
            else:
                self.assertIs(receipt.into_result(), receipt)
                self.assertIsNone(receipt.error())
        self.assertEqual(str(sdk.Receipt(testing.receipt("a2", D.OUTCOME_UNKNOWN))), "a2 (outcome-unknown)")
        FakeHost(self, {"remediation.remediate": lambda *_: testing.receipt("a3", D.SUBMITTED)})
        self.assertEqual(sdk.remediation.remediate("11.1", [], "r"), sdk.Receipt(testing.receipt("a3", D.SUBMITTED)))

    def test_export_rule_reports_failures_as_wit_errors(self):
        class Demo(sdk.Rule):
            def describe(self):
                return sdk.Info("demo", "1.2.3").description("d").activity_types(["RANSOMWARE"]).interval_seconds(60)

            def on_malop(self, malop):
                if malop.priority == sdk.Priority.LOW:
                    raise sdk.Denied("not granted")
                if malop.priority == sdk.Priority.MEDIUM:
                    raise KeyError("boom")
                sdk.bookkeeping.add_comment(malop.id, f"{len(malop.connected_machines())} connected")

        world = sdk.export_rule(Demo)()
        self.assertIn(importlib.import_module("wit_world").WitWorld, type(world).__mro__)
        info = world.describe()
        self.assertEqual((info.name, info.version, info.description, info.interval_seconds), ("demo", "1.2.3", "d", 60))
        self.assertEqual(info.subscription.activity_types, ["RANSOMWARE"])
        host = FakeHost(self)
        world.on_malop(two_machines().build())
        self.assertEqual(host.actions(), [("bookkeeping.add_comment", (ID, "1 connected"))])
        with self.assertRaises(Err) as denied:
            world.on_malop(malware().priority(wit_types.Priority.LOW).build())
        self.assertEqual(denied.exception.value, wit_types.Error_Denied("not granted"))
        with self.assertRaises(Err) as failed:
            world.on_malop(malware().priority(wit_types.Priority.MEDIUM).build())
        self.assertEqual(failed.exception.value, wit_types.Error_Failed("KeyError: 'boom'"))
        world.on_interval(0)

    def test_config_and_kv(self):
        store = {}
        values = {"list": " a, ,b ,", "on": "Yes", "odd": "maybe"}
        FakeHost(self, {
            "config.get": values.get,
            "kv.get": store.get,
            "kv.set": store.__setitem__,
        })
        self.assertEqual(sdk.config.list("list"), ["a", "b"])
        self.assertEqual(sdk.config.list("missing"), [])
        self.assertTrue(sdk.config.flag("on", False))
        self.assertFalse(sdk.config.flag("odd", False))
        self.assertEqual(sdk.config.get_or("missing", "x"), "x")
        sdk.kv.set_string("seen", "héllo")
        self.assertEqual(store["seen"], "héllo".encode())
        self.assertEqual(sdk.kv.get_string("seen"), "héllo")
        self.assertIsNone(sdk.kv.get_string("nothing"))


class MinimalRuleTest(unittest.TestCase):
    def test_the_readme_rule_isolates_the_connected_machines_only(self):
        sys.path.insert(0, str(SDK / "examples"))
        rule = importlib.import_module("minimal_rule").WitWorld()
        self.assertEqual(rule.describe().subscription.activity_types, ["RANSOMWARE"])
        D = sdk.Disposition
        host = FakeHost(self, {"isolation.isolate": lambda *_: testing.receipt("a1", D.SHADOWED)})
        rule.on_malop(two_machines().build())
        self.assertEqual(host.actions(), [("isolation.isolate", (ID, ["1.1"], "ransomware Malop"))])
        host.calls.clear()
        rule.on_malop(malware().machine(testing.machine("2.2", "b", connected=False)).build())
        self.assertEqual(host.actions(), [])
        self.assertIn("no connected machine to isolate", host.calls[0][1][1])
        # An isolation the server reports failed fails the invocation with the reason.
        FakeHost(self, {"isolation.isolate": lambda *_: testing.receipt("a1", D.FAILED, "sensor went away")})
        with self.assertRaises(Err) as failed:
            rule.on_malop(two_machines().build())
        self.assertEqual(failed.exception.value, wit_types.Error_ServerError("action a1 failed: sensor went away"))


class PythonTriageTest(unittest.TestCase):
    """The example rule, on the SDK, decides as its fixtures expect (pure parts and the calls)."""

    def comment_on(self, record):
        """The comment python-triage adds for `record` with the default options."""
        app = importlib.import_module("app")
        host = FakeHost(self, {"config.get": {}.get})
        app.WitWorld().on_malop(record)
        comments = [c[1][1] for c in host.actions() if c[0] == "bookkeeping.add_comment"]
        self.assertEqual(len(comments), 1, host.actions())
        return comments[0]

    def test_it_comments_and_opens_untriaged_high_priority_malops_only(self):
        app = importlib.import_module("app")
        host = FakeHost(self, {"config.get": {}.get})
        world = app.WitWorld()
        self.assertEqual(world.describe().name, "python-triage")
        world.on_malop(two_machines().build())
        names = [c[0] for c in host.actions()]
        self.assertEqual(names, ["config.get", "config.get", "config.get", "bookkeeping.add_comment", "bookkeeping.set_status"])
        comment = host.actions()[3][1][1]
        self.assertIn("machines: 2 (1 connected, offline: LAPTOP-2)", comment)
        self.assertNotIn("not readable", comment)
        host.calls.clear()
        world.on_malop(malware().priority(wit_types.Priority.LOW).build())
        self.assertNotIn("bookkeeping.add_comment", [c[0] for c in host.actions()])

    def test_a_partly_read_malop_is_triaged_with_what_there_is(self):
        P = sdk.MalopPart
        comment = self.comment_on(two_machines().unreadable([P.SENSORS, P.SUSPECTS]).build())
        self.assertIn("machines: 2 (sensor state not readable)", comment)
        self.assertNotIn("offline", comment)
        self.assertTrue(comment.endswith("; not readable yet: suspects, sensors."), comment)
        comment = self.comment_on(two_machines().unreadable([P.NETWORK]).build())
        self.assertIn("machines: 2 (1 connected, offline: LAPTOP-2)", comment)
        self.assertTrue(comment.endswith("; not readable yet: network."), comment)

    def test_a_refused_comment_still_opens_then_reports_the_refusal(self):
        app = importlib.import_module("app")

        def refuse(*_):
            raise Err(wit_types.Error_Denied("add-comment is not granted"))

        host = FakeHost(self, {"config.get": {}.get, "bookkeeping.add_comment": refuse})
        with self.assertRaises(Err) as caught:
            app.WitWorld().on_malop(malware().build())
        self.assertEqual(caught.exception.value, wit_types.Error_Denied("add-comment is not granted"))
        self.assertIn("bookkeeping.set_status", [c[0] for c in host.actions()])


if __name__ == "__main__":
    unittest.main()
