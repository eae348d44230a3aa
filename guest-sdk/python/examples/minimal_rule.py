"""A complete rule in about 20 lines: the README's rule, in Python (guest-sdk/python/tests runs it)."""

from riposte_guest import Info, Malop, Rule, export_rule, info, isolation


class IsolateRansomware(Rule):
    def describe(self) -> Info:
        return (
            Info("isolate-ransomware", "0.1.0")
            .description("Isolates the connected machines of ransomware Malops")
            .activity_types(["RANSOMWARE"])
        )

    def on_malop(self, malop: Malop) -> None:
        guids = malop.guids_of(malop.connected_machines())
        if not guids:
            info(f"{malop.id}: no connected machine to isolate")
            return
        isolation.isolate(malop.id, guids, "ransomware Malop").into_result()


WitWorld = export_rule(IsolateRansomware)
