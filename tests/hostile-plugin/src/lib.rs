//! A hostile rule. The operator's config value `attack` picks one misbehaviour; the sandbox
//! tests load it several times with different values next to a well-behaved plugin.
//! Probes that must fail (files, env, sockets) log what they got, for the tests to read.

wit_bindgen::generate!({ path: "../../wit", world: "rule", generate_all });

use riposte::plugin::plugin::Subscription;
use riposte::plugin::reputation::{self, KeyKind, ReputationKey, Verdict};
use riposte::plugin::types::ManagementStatus;
use riposte::plugin::{bookkeeping, config, isolation, kv, log, malops, remediation};
use std::hint::black_box;

struct Hostile;

fn say(message: &str) {
    log::log(log::Level::Info, message);
}

fn spin() -> ! {
    let mut x = 0u64;
    loop {
        x = black_box(x.wrapping_add(1));
    }
}

fn exhaust_memory() -> usize {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1 << 20];
        block[4096] = 1;
        hoard.push(black_box(block));
        black_box(hoard.len());
    }
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 32]);
    black_box(recurse(depth + 1)) + frame[3]
}

fn flood_stdout() {
    let line = "flood ".repeat(100);
    loop {
        println!("{line}");
    }
}

/// Empty log messages, as fast as the plugin can: each still costs riposte a log line.
fn flood_empty_log() {
    loop {
        log::log(log::Level::Error, "");
    }
}

/// Reads one kv key in a loop until stopped: each read takes the database's lock the
/// ledger's writes need.
fn flood_kv_reads() {
    loop {
        let _ = kv::get("probe");
    }
}

/// One call handing the host more bytes than any call within the bounds needs (six distinct
/// 1 MiB machine guids): the host must stop it before copying it all.
fn call_megabytes(malop: &Malop) {
    let guids: Vec<String> = (0..6u8)
        .map(|i| char::from(b'a' + i).to_string().repeat(1 << 20))
        .collect();
    report(
        "megabytes in one call",
        isolation::isolate(Some(&malop.id), &guids, "hostile"),
    );
}

fn flood_log() {
    let line = "flood ".repeat(100);
    loop {
        say(&line);
    }
}

/// Logs what the WASI clocks say: pinned by `riposte plugin test`, they are the same on
/// every run.
fn probe_clock() {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let start = std::time::Instant::now();
    let step = start.elapsed().as_nanos();
    say(&format!(
        "probe clock: wall {wall} ms, monotonic step {step} ns"
    ));
}

fn probe_file() {
    for path in ["/etc/passwd", "/proc/self/environ", ".", "/"] {
        match std::fs::read_dir(path).map(|d| d.count()) {
            Ok(n) => say(&format!("probe file {path}: GOT a listing of {n} entries")),
            Err(e) => say(&format!("probe file {path}: refused: {e}")),
        }
        match std::fs::read(path) {
            Ok(bytes) => say(&format!("probe file {path}: GOT {} bytes", bytes.len())),
            Err(e) => say(&format!("probe file {path}: refused: {e}")),
        }
    }
    match std::fs::write("planted.txt", b"x") {
        Ok(()) => say("probe file write: GOT a written file"),
        Err(e) => say(&format!("probe file write: refused: {e}")),
    }
}

fn probe_env() {
    let vars: Vec<(String, String)> = std::env::vars().collect();
    if vars.is_empty() {
        say("probe env: refused: no variables");
    } else {
        say(&format!("probe env: GOT {} variables", vars.len()));
    }
    match std::env::var("RIPOSTE_PASSWORD").or_else(|_| std::env::var("HOME")) {
        Ok(v) => say(&format!("probe env: GOT a value of {} bytes", v.len())),
        Err(e) => say(&format!("probe env var: refused: {e}")),
    }
    let args: Vec<String> = std::env::args().collect();
    say(&format!("probe env args: {} arguments", args.len()));
}

fn probe_socket() {
    for addr in ["127.0.0.1:80", "127.0.0.1:22", "[::1]:443"] {
        match std::net::TcpStream::connect(addr) {
            Ok(_) => say(&format!("probe socket {addr}: GOT a connection")),
            Err(e) => say(&format!("probe socket {addr}: refused: {e}")),
        }
    }
    match std::net::UdpSocket::bind("0.0.0.0:0") {
        Ok(_) => say("probe socket udp: GOT a socket"),
        Err(e) => say(&format!("probe socket udp: refused: {e}")),
    }
}

fn isolate_all(malop: &Malop) -> Result<(), Error> {
    let guids: Vec<String> = malop.machines.iter().map(|m| m.guid.clone()).collect();
    let receipt = isolation::isolate(Some(&malop.id), &guids, "hostile: isolate everything")?;
    say(&format!(
        "isolated {} machines: {:?}",
        guids.len(),
        receipt.disposition
    ));
    Ok(())
}

/// Isolates the Malop's machines one call each, so that no one call is large.
fn split_isolation(malop: &Malop) {
    for machine in &malop.machines {
        let answer = isolation::isolate(
            Some(&malop.id),
            std::slice::from_ref(&machine.guid),
            "hostile: one machine at a time",
        );
        report(&format!("split-isolation {}", machine.guid), answer);
    }
}

/// Kills every suspect of the Malop, each on its machine: one unit per machine.
fn kill_everything(malop: &Malop) -> Result<(), Error> {
    let targets: Vec<remediation::Target> = malop
        .suspects
        .iter()
        .map(|s| kill(&s.machine_guid, &s.guid))
        .collect();
    remediation::remediate(Some(&malop.id), &targets, "hostile: kill on every machine")?;
    Ok(())
}

/// Kills every suspect on its own machine and logs the receipt as the host words it:
/// asked again (the Malop offered again), the receipt says where the first request stands.
fn kill_suspects(malop: &Malop, with_malop: bool) -> Result<remediation::Receipt, Error> {
    let targets: Vec<remediation::Target> = malop
        .suspects
        .iter()
        .map(|s| remediation::Target {
            machine_guid: s.machine_guid.clone(),
            target_guid: s.guid.clone(),
            kind: remediation::ActionKind::KillProcess,
        })
        .collect();
    let malop_id = with_malop.then_some(malop.id.as_str());
    let receipt = remediation::remediate(malop_id, &targets, "hostile: kill the suspects")?;
    say(&format!(
        "receipt {} {:?}: {}",
        receipt.action_id, receipt.disposition, receipt.detail
    ));
    Ok(receipt)
}

/// Kills the suspects, then asks where the remediation stands and logs the answer.
fn kill_then_status(malop: &Malop) -> Result<(), Error> {
    let receipt = kill_suspects(malop, true)?;
    let progress = remediation::status(&receipt.action_id)?;
    say(&format!("status {progress:?}"));
    Ok(())
}

/// Kills, then asks for the remediation's status again and again: each ask the host passes
/// on reaches the server.
fn status_flood(malop: &Malop) -> Result<(), Error> {
    let receipt = kill_suspects(malop, true)?;
    let answered = (0..200)
        .filter(|_| remediation::status(&receipt.action_id).is_ok())
        .count();
    say(&format!("status-flood: {answered} answers"));
    Ok(())
}

fn kill(machine: &str, process: &str) -> remediation::Target {
    remediation::Target {
        machine_guid: machine.to_owned(),
        target_guid: process.to_owned(),
        kind: remediation::ActionKind::KillProcess,
    }
}

fn hash(value: &str) -> ReputationKey {
    ReputationKey {
        kind: KeyKind::FileHash,
        value: value.to_owned(),
    }
}

/// Logs what one probe got: `<what>: GOT ...` or `<what>: refused: <kind>: <detail>`.
fn report<T>(what: &str, result: Result<T, Error>) {
    match result {
        Ok(_) => say(&format!("{what}: GOT it through")),
        Err(e) => {
            let (kind, detail) = match &e {
                Error::Denied(d) => ("denied", d),
                Error::BudgetExhausted(d) => ("budget-exhausted", d),
                Error::ProtectedTarget(d) => ("protected-target", d),
                Error::NotFound(d) => ("not-found", d),
                Error::ServerError(d) => ("server-error", d),
                Error::InvalidArgument(d) => ("invalid-argument", d),
                Error::Failed(d) => ("failed", d),
                Error::OutOfScope(d) => ("out-of-scope", d),
                Error::QuotaExceeded(d) => ("quota-exceeded", d),
            };
            let short: String = detail.chars().take(300).collect();
            say(&format!("{what}: refused: {kind}: {short}"))
        }
    }
}

/// Logs what an action probe got: a refusal as [`report`] does, or the receipt as the host
/// words it: `<what>: receipt <disposition>: <detail>`.
fn report_receipt(what: &str, result: Result<remediation::Receipt, Error>) {
    match result {
        Ok(r) => say(&format!("{what}: receipt {:?}: {}", r.disposition, r.detail)),
        Err(e) => report(what, Err::<(), _>(e)),
    }
}

/// The other Malops the server knows (through `list-malops`).
fn other_malops(malop_id: Option<&str>) -> Vec<Malop> {
    malops::list_malops(0, i64::MAX)
        .unwrap_or_default()
        .into_iter()
        .filter(|m| Some(m.id.as_str()) != malop_id)
        .collect()
}

/// Acts on what another Malop names (looked up with `get-malop`), filed under this one: every
/// kind of target.
fn out_of_scope(malop: &Malop) {
    let mine: Vec<&str> = malop.machines.iter().map(|m| m.guid.as_str()).collect();
    for listed in other_malops(Some(&malop.id)) {
        let other = malops::get_malop(&listed.id).unwrap_or(listed);
        let theirs: Vec<String> = other
            .machines
            .iter()
            .filter(|m| !mine.contains(&m.guid.as_str()))
            .map(|m| m.guid.clone())
            .collect();
        if !theirs.is_empty() {
            report(
                "out-of-scope isolate",
                isolation::isolate(Some(&malop.id), &theirs, "hostile: isolate elsewhere"),
            );
        }
        for s in &other.suspects {
            report(
                "out-of-scope kill",
                remediation::remediate(Some(&malop.id), &[kill(&s.machine_guid, &s.guid)], "hostile"),
            );
            if let Some(m) = mine.first() {
                report(
                    "out-of-scope kill on my machine",
                    remediation::remediate(Some(&malop.id), &[kill(m, &s.guid)], "hostile"),
                );
            }
        }
        for f in &other.files {
            let quarantine = remediation::Target {
                machine_guid: f.machine_guid.clone(),
                target_guid: f.guid.clone(),
                kind: remediation::ActionKind::QuarantineFile,
            };
            report(
                "out-of-scope quarantine",
                remediation::remediate(Some(&malop.id), &[quarantine], "hostile"),
            );
        }
        for h in other.root_causes.iter().flat_map(|r| &r.hashes) {
            report(
                "out-of-scope blacklist",
                reputation::set_reputation(&[hash(h)], Verdict::Blacklist, true, "hostile"),
            );
        }
    }
    report(
        "out-of-scope made-up machine",
        isolation::isolate(Some(&malop.id), &["-1.4242424242".to_owned()], "hostile"),
    );
}

/// Names another Malop (or none) as the `malop-id` of actions on this one's targets.
fn foreign_malop(malop: &Malop) {
    let mine: Vec<String> = malop.machines.iter().map(|m| m.guid.clone()).collect();
    report(
        "foreign-malop isolate without a Malop",
        isolation::isolate(None, &mine, "hostile: no Malop"),
    );
    for other in other_malops(Some(&malop.id)) {
        report(
            "foreign-malop isolate",
            isolation::isolate(Some(&other.id), &mine, "hostile: filed elsewhere"),
        );
        report(
            "foreign-malop set-status",
            bookkeeping::set_status(&other.id, ManagementStatus::Closed),
        );
        report(
            "foreign-malop add-comment",
            bookkeeping::add_comment(&other.id, "hostile: closed by a rule"),
        );
    }
}

/// From `on-interval` (no Malop): acts on every Malop the server lists.
fn act_from_interval() {
    for malop in other_malops(None) {
        let machines: Vec<String> = malop.machines.iter().map(|m| m.guid.clone()).collect();
        report(
            "interval isolate",
            isolation::isolate(Some(&malop.id), &machines, "hostile: from on-interval"),
        );
        report(
            "interval set-status",
            bookkeeping::set_status(&malop.id, ManagementStatus::Closed),
        );
    }
}

/// From `on-interval`: spends the budget on made-up targets, sequentially: machines that do
/// not exist, and processes that do not exist on a real machine.
fn drain_budget() {
    let real = other_malops(None)
        .into_iter()
        .find_map(|m| m.machines.first().map(|machine| (m.id.clone(), machine.guid.clone())));
    for round in 0..10 {
        let fake: Vec<String> = (0..3).map(|i| format!("-{round}{i}.4242424242")).collect();
        report_receipt(
            "drain isolate",
            isolation::isolate(None, &fake, "hostile: made-up machines"),
        );
        if let Some((malop, machine)) = &real {
            report_receipt(
                "drain kill",
                remediation::remediate(
                    Some(malop),
                    &[kill(machine, &format!("-{round}.4242424242"))],
                    "hostile: made-up process",
                ),
            );
        }
    }
}

/// Asks for Malop details until the host refuses.
fn query_flood() {
    let mut answered = 0u32;
    for _ in 0..100_000 {
        match malops::get_malop("11.4242424242") {
            Ok(_) | Err(Error::NotFound(_)) => answered += 1,
            Err(e) => {
                report(&format!("query-flood after {answered} queries"), Err::<(), _>(e));
                return;
            }
        }
    }
    say(&format!("query-flood: GOT {answered} queries through"));
}

/// Sends every argument far past its bound, then fails with a huge error.
/// Written by every `residue` invocation; a fresh instance must find it zero.
static mut RESIDUE: [u8; 256] = [0; 256];

/// Looks for what an earlier invocation left in linear memory (the pool slots are reused):
/// a static, and the page just past the memory's initial size, each filled with 0xA5 before
/// returning. Fails, naming what it found, if either is not zero at the start.
fn residue() -> Result<(), Error> {
    use core::arch::wasm32::memory_grow;
    const PAGE: usize = 65_536;
    let grown = memory_grow(0, 1);
    if grown == usize::MAX {
        return Err(Error::Failed("memory.grow refused one page".into()));
    }
    let page = (grown * PAGE) as *mut u8;
    // SAFETY: the page was just grown: in bounds, and no allocator hands it out.
    let page = unsafe { core::slice::from_raw_parts_mut(page, PAGE) };
    // SAFETY: one thread; the static is only touched here.
    let statics = unsafe { &mut *core::ptr::addr_of_mut!(RESIDUE) };
    let found = (
        statics.iter().any(|b| *b != 0),
        black_box(&*page).iter().any(|b| *b != 0),
    );
    statics.fill(0xA5);
    page.fill(0xA5);
    black_box((&*statics, &*page));
    match found {
        (false, false) => Ok(()),
        (in_static, in_page) => Err(Error::Failed(format!(
            "an earlier invocation's memory: in a static {in_static}, in a grown page {in_page}"
        ))),
    }
}

fn oversized(malop: &Malop) -> Error {
    let mine: Vec<String> = malop.machines.iter().map(|m| m.guid.clone()).collect();
    let huge = "x".repeat(1 << 20);
    report(
        "oversized malop-id",
        isolation::isolate(Some(&format!("{}{huge}", malop.id)), &mine, "hostile"),
    );
    let many: Vec<String> = (0..100_000).map(|i| format!("{i}.{i}")).collect();
    report(
        "oversized machine list",
        isolation::isolate(Some(&malop.id), &many, "hostile"),
    );
    report(
        "oversized machine guid",
        isolation::isolate(Some(&malop.id), &[huge.clone()], "hostile"),
    );
    report(
        "oversized reason",
        isolation::isolate(Some(&malop.id), &mine, &huge),
    );
    report(
        "oversized comment",
        // Past every bound but `MAX_CALL_BYTES` (4 MiB), which stops the invocation.
        bookkeeping::add_comment(&malop.id, &"y".repeat(2 << 20)),
    );
    report(
        "oversized key",
        reputation::set_reputation(&[hash(&huge)], Verdict::Blacklist, false, "hostile"),
    );
    report("oversized get-malop id", malops::get_malop(&huge));
    report("oversized kv key", kv::set(&huge, b"v"));
    report("oversized kv value", kv::set("k", &vec![0u8; 2 << 20]));
    Error::Failed(format!("hostile: {huge}"))
}

/// Whitelists the Malop's own root-cause and suspect hashes.
fn whitelist_own(malop: &Malop) {
    let own: Vec<String> = malop
        .root_causes
        .iter()
        .flat_map(|r| r.hashes.clone())
        .chain(malop.suspects.iter().filter_map(|s| s.image_sha1.clone()))
        .collect();
    for h in &own {
        report(
            "whitelist own hash",
            reputation::set_reputation(&[hash(h)], Verdict::Whitelist, false, "hostile: hide it"),
        );
    }
    report(
        "whitelist another hash",
        reputation::set_reputation(
            &[hash("0123456789abcdef0123456789abcdef01234567")],
            Verdict::Whitelist,
            false,
            "hostile",
        ),
    );
}

/// Blacklists the Malop's first suspect image hash spelled with padding and in upper case:
/// the host must treat it as the hash it names (its ledger key, its protection check).
fn padded_blacklist(malop: &Malop) {
    let Some(sha1) = malop.suspects.iter().find_map(|s| s.image_sha1.clone()) else {
        return say("padded-blacklist: no suspect hash");
    };
    report(
        "padded-blacklist",
        reputation::set_reputation(
            &[hash(&format!(" {} ", sha1.to_ascii_uppercase()))],
            Verdict::Blacklist,
            false,
            "hostile: padded key",
        ),
    );
}

/// Tries to start lines of riposte's own log.
fn forge_logs() {
    say("benign\nFORGED  INFO riposte::service: approved-action by operator\r\n{\"fields\":{\"message\":\"FORGED\"}}\u{1b}[2K\u{2028}FORGED");
}

/// Writes kv entries until the host refuses.
fn kv_flood(malop: &Malop) {
    let mut written = 0u32;
    for i in 0..100_000 {
        match kv::set(&format!("{}-{i}", malop.id), b"flood") {
            Ok(()) => written += 1,
            Err(e) => {
                report(&format!("kv-flood after {written} writes"), Err::<(), _>(e));
                return;
            }
        }
    }
    say(&format!("kv-flood: GOT {written} writes through"));
}

/// Writes stdout, stderr and log in turn, 1 KiB at a time, until stopped.
fn mixed_flood() {
    use std::io::Write;
    let chunk = "m".repeat(1023);
    loop {
        let _ = writeln!(std::io::stdout(), "{chunk}");
        let _ = writeln!(std::io::stderr(), "{chunk}");
        say(&chunk);
    }
}

impl Guest for Hostile {
    fn describe() -> Info {
        // describe runs at load with no grants and no quotas: the host must refuse this.
        let probe = match kv::set("describe-probe", b"x") {
            Ok(()) => "GOT a kv write",
            Err(_) => "kv refused",
        };
        Info {
            name: "hostile".into(),
            version: "0.1.0".into(),
            description: format!(
                "misbehaves on purpose, as the `attack` config value says (describe probe: {probe})"
            ),
            subscription: Subscription {
                element_kinds: vec![],
                activity_types: vec![],
                detection_types: vec![],
            },
            // Always asked for: the `interval*` and `drain` attacks run from on-interval;
            // every other attack does nothing there.
            interval_seconds: Some(1),
        }
    }

    fn on_malop(malop: Malop) -> Result<(), Error> {
        let attack = config::get("attack").unwrap_or_default();
        match attack.as_str() {
            "loop" => spin(),
            "memory" => {
                exhaust_memory();
            }
            "recursion" => {
                recurse(0);
            }
            "flood" => flood_stdout(),
            "log-flood" => flood_log(),
            "empty-log-flood" => flood_empty_log(),
            "kv-read-flood" => flood_kv_reads(),
            "call-megabytes" => call_megabytes(&malop),
            "panic" => panic!("hostile plugin panicked on purpose"),
            "read-file" => probe_file(),
            "env" => probe_env(),
            "socket" => probe_socket(),
            "clock" => probe_clock(),
            "isolate-all" | "ungranted" | "protected" => isolate_all(&malop)?,
            "fan-out" => kill_everything(&malop)?,
            "split-isolation" => split_isolation(&malop),
            "kill-suspects" => drop(kill_suspects(&malop, true)?),
            "kill-suspects-no-malop" => drop(kill_suspects(&malop, false)?),
            "kill-then-status" => kill_then_status(&malop)?,
            "status-flood" => status_flood(&malop)?,
            "out-of-scope" => out_of_scope(&malop),
            "foreign-malop" => foreign_malop(&malop),
            "query-flood" => query_flood(),
            "oversized" => return Err(oversized(&malop)),
            "whitelist-own" => whitelist_own(&malop),
            "padded-blacklist" => padded_blacklist(&malop),
            "log-forge" => forge_logs(),
            "kv-flood" => kv_flood(&malop),
            "mixed-flood" => mixed_flood(),
            "residue" => residue()?,
            "interval" | "drain" => {}
            other => return Err(Error::Failed(format!("unknown attack `{other}`"))),
        }
        Ok(())
    }

    fn on_interval(_now: i64) -> Result<(), Error> {
        match config::get("attack").unwrap_or_default().as_str() {
            "interval" => act_from_interval(),
            "drain" => drain_budget(),
            _ => {}
        }
        Ok(())
    }
}

export!(Hostile);
