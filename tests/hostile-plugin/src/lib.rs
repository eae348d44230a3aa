//! A hostile rule. The operator's config value `attack` picks one misbehaviour; the sandbox
//! tests load it several times with different values next to a well-behaved plugin.
//! Probes that must fail (files, env, sockets) log what they got, for the tests to read.

wit_bindgen::generate!({ path: "../../wit", world: "rule", generate_all });

use riposte::plugin::plugin::Subscription;
use riposte::plugin::{config, isolation, log, remediation};
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
    say(&format!("probe clock: wall {wall} ms, monotonic step {step} ns"));
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
    say(&format!("isolated {} machines: {:?}", guids.len(), receipt.disposition));
    Ok(())
}

fn kill_everything(malop: &Malop) -> Result<(), Error> {
    let targets: Vec<remediation::Target> = malop
        .machines
        .iter()
        .map(|m| remediation::Target {
            machine_guid: m.guid.clone(),
            target_guid: format!("{}.process", m.guid),
            kind: remediation::ActionKind::KillProcess,
        })
        .collect();
    remediation::remediate(Some(&malop.id), &targets, "hostile: kill on every machine")?;
    Ok(())
}

impl Guest for Hostile {
    fn describe() -> Info {
        Info {
            name: "hostile".into(),
            version: "0.1.0".into(),
            description: "misbehaves on purpose, as the `attack` config value says".into(),
            subscription: Subscription {
                element_kinds: vec![],
                activity_types: vec![],
                detection_types: vec![],
            },
            interval_seconds: None,
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
            "panic" => panic!("hostile plugin panicked on purpose"),
            "read-file" => probe_file(),
            "env" => probe_env(),
            "socket" => probe_socket(),
            "clock" => probe_clock(),
            "isolate-all" | "ungranted" | "protected" => isolate_all(&malop)?,
            "fan-out" => kill_everything(&malop)?,
            other => return Err(Error::Failed(format!("unknown attack `{other}`"))),
        }
        Ok(())
    }

    fn on_interval(_now: i64) -> Result<(), Error> {
        Ok(())
    }
}

export!(Hostile);
