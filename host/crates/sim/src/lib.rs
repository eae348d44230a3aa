//! A faithful simulator of a Cybereason server, on loopback.
//!
//! It reproduces the quirks of `shared/cybereason-api.md`: the login page answered with
//! HTTP 200 on a bad password (with a cookie that is no session), `302 → /login.html` for
//! unauthenticated `/rest` calls, failures as HTTP 200 bodies, ids as strings in the real
//! formats, asynchronous remediation, isolation keyed by pylumId, the reputation array body
//! and its CSV download, sensors online and offline.
//!
//! **Time.** The server clock (`clock_ms`) only moves when something changes (one second per
//! mutation) or when told (`/sim/advance {"ms"}`); seeded data is relative to `start_ms`, so
//! the same seed gives the same data. A remediation is PENDING in the POST reply, and moves one
//! step per progress/status poll (`steps_per_poll`, 0 to disable) or per `/sim/advance
//! {"steps"}`: step 1 is IN_PROGRESS, step 2 is final (SUCCESS, or FAILURE when the sensor was
//! offline or the target unknown). No wall-clock time is involved.
//!
//! **Faults** are queued ([`Fault`]) through [`SimHandle::inject`], `POST /sim/faults`, or
//! start-up flags, and consumed by the next matching requests. A tenant whose API user has no
//! investigation rights is a standing switch: `--refuse-investigation`,
//! [`SimHandle::refuse_investigation`], `POST /sim/investigation/refuse` (or `/allow`). So is the
//! server's latency: `--latency-ms`, [`SimHandle::set_latency`], `POST /sim/latency`
//! `{"ms": n}` (every API answer comes that long after its request). Every request is in the log
//! ([`SimHandle::requests`], `GET /sim/requests`) with the login password redacted and its
//! wall-clock arrival time.
//!
//! **Syslog events.** With [`SimConfig::syslog`] (`riposte sim --syslog HOST:PORT`), every
//! Malop created or updated at run time (not the seeded ones) is also announced as a CEF
//! `Malop Created` / `Malop Updated` event to that collector, as a Cybereason server forwards
//! them; see [`SimSyslog`]. A control call creates a Malop now ([`SimHandle::create_malop`],
//! `POST /sim/malops`).

mod api;
mod control;
mod data;
mod events;
mod pages;
mod query;
mod recorded;
mod render;
mod reply;
mod rng;
mod server;
mod state;

pub use data::{MalopKind, ORG, SimConnection, SimFile, SimMachine, SimMalop, SimProcess};
pub use events::{SimEventStyle, SimSyslog, SimSyslogStats};
pub use recorded::Unservable;
pub use state::{
    Fault, FaultKind, LessThan, LoggedRequest, MalopSpec, NewMalop, OverLimit, SimQuarantine,
    SimState, UnknownMachine,
};

use anyhow::Context as _;
use riposte_domain::MalopId;
use riposte_syslog::{Framing, SenderConfig, SenderTransport};
use state::Shared;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The most results a real server's crimes/unified answer holds (`totalResultLimit` is capped
/// at 10,000 on real tenants).
pub(crate) const SERVER_RESULT_LIMIT: usize = 10_000;

/// The environment variable `riposte sim` reads its password from (the one the riposte
/// client reads, so one `export` serves both).
pub(crate) const PASSWORD_ENV: &str = "RIPOSTE_PASSWORD";

/// How to build a simulator.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// PRNG seed for the generated world.
    pub seed: u64,
    /// Number of Malops generated at start.
    pub malops: usize,
    /// The user that can log in.
    pub username: String,
    /// Its password.
    pub password: String,
    /// Ask for a two-factor code after a good password (login then cannot complete).
    pub two_factor: bool,
    /// Remediation steps per progress/status poll (0: only `advance` moves them).
    pub steps_per_poll: u32,
    /// The server clock at start (ms since the epoch).
    pub start_ms: i64,
    /// Faults queued from the start.
    pub faults: Vec<Fault>,
    /// Sensors (pylumId, guid or host name) offline from the start.
    pub offline: Vec<String>,
    /// Refuse every investigation (`visualsearch`) query with a failure body, as a server does
    /// for an API user without investigation rights.
    pub refuse_investigation: bool,
    /// How long after its request every API answer comes (ms): a real tenant's network round
    /// trip and server time; requests in flight wait side by side.
    pub latency_ms: u64,
    /// The most results one `crimes/unified` answer holds (a real server's: 10,000).
    pub result_limit: usize,
    /// Where to send a CEF Malop event for every Malop created or updated (none: nowhere).
    pub syslog: Option<SimSyslog>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: 1,
            malops: 8,
            username: "analyst@riposte.local".into(),
            password: "riposte-sim-password".into(),
            two_factor: false,
            steps_per_poll: 1,
            start_ms: 1_767_225_600_000,
            faults: Vec::new(),
            offline: Vec::new(),
            refuse_investigation: false,
            latency_ms: 0,
            result_limit: SERVER_RESULT_LIMIT,
            syslog: None,
        }
    }
}

/// How long [`SimHandle::shutdown`] waits for queued syslog events to be written.
const SYSLOG_GRACE: Duration = Duration::from_secs(2);

/// The simulator entry point.
#[derive(Debug)]
pub struct Simulator;

impl Simulator {
    /// Generates the world and starts serving on `config.listen`.
    pub async fn start(config: SimConfig) -> anyhow::Result<SimHandle> {
        let mut st = SimState::generate(
            config.seed,
            config.malops,
            config.start_ms,
            config.username.clone(),
            config.password.clone(),
        );
        st.two_factor = config.two_factor;
        st.steps_per_poll = config.steps_per_poll;
        st.refuse_investigation = config.refuse_investigation;
        st.latency_ms = config.latency_ms;
        st.result_limit = config.result_limit;
        st.faults.extend(config.faults.iter().cloned());
        for key in &config.offline {
            anyhow::ensure!(st.set_online(key, false), "--offline {key}: no such sensor");
        }
        if let Some(syslog) = &config.syslog {
            st.events = Some(events::MalopEvents::start(syslog)?);
        }
        Self::serve(config.listen, st).await
    }

    /// Serves a world built by the caller (e.g. [`SimState::from_recorded`]) on `listen`.
    pub async fn serve(listen: SocketAddr, state: SimState) -> anyhow::Result<SimHandle> {
        let shared = Arc::new(Shared::new(state));
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr().context("listener address")?;
        let app = axum::Router::new()
            .fallback(server::dispatch)
            .with_state(shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move {
            let stop = async {
                let _ = rx.await;
            };
            if let Err(e) = axum::serve(listener, service)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %e, "simulator server stopped");
            }
        });
        Ok(SimHandle {
            addr,
            shared,
            stop: Some(tx),
            task: Some(task),
        })
    }
}

/// A running simulator: its address and in-process control. Dropping it stops the server.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SimHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`: the client's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Runs `f` on the locked state (for inspection or changes the other methods lack).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut SimState) -> R) -> R {
        f(&mut self.shared.lock())
    }

    /// A new Malop appears now; returns its id.
    pub fn add_malop(&self) -> MalopId {
        MalopId::new(self.with_state(SimState::add_malop))
    }

    /// A new Malop as `spec` says appears now (its `Malop Created` event is queued).
    pub fn create_malop(&self, spec: MalopSpec) -> Result<NewMalop, UnknownMachine> {
        self.with_state(|s| s.create_malop(spec))
    }

    /// The syslog event sender's counters; `None` without [`SimConfig::syslog`].
    pub fn syslog_stats(&self) -> Option<SimSyslogStats> {
        self.with_state(|s| s.events.as_ref().map(events::MalopEvents::stats))
    }

    /// The Malop is updated now; returns its new `malopLastUpdateTime`.
    pub fn touch_malop(&self, id: &MalopId) -> Option<i64> {
        self.with_state(|s| s.touch_malop(id.as_str()))
    }

    /// A copy of every Malop.
    pub fn malops(&self) -> Vec<SimMalop> {
        self.with_state(|s| s.malops.clone())
    }

    /// A copy of every machine.
    pub fn machines(&self) -> Vec<SimMachine> {
        self.with_state(|s| s.machines.clone())
    }

    /// Expires every session (the next `/rest` call gets `302 → /login.html`).
    pub fn expire_sessions(&self) {
        self.with_state(|s| s.sessions.clear());
    }

    /// Queues a fault.
    pub fn inject(&self, fault: Fault) {
        self.with_state(|s| s.faults.push_back(fault));
    }

    /// Drops pending faults.
    pub fn clear_faults(&self) {
        self.with_state(|s| s.faults.clear());
    }

    /// Sets a sensor (pylumId, guid or host name) online or offline; false if unknown.
    pub fn set_online(&self, sensor: &str, online: bool) -> bool {
        self.with_state(|s| s.set_online(sensor, online))
    }

    /// Refuses (or serves again) every investigation (`visualsearch`) query.
    pub fn refuse_investigation(&self, refuse: bool) {
        self.with_state(|s| s.refuse_investigation = refuse);
    }

    /// Sets how long after its request every API answer comes (ms; 0: at once).
    pub fn set_latency(&self, ms: u64) {
        self.with_state(|s| s.latency_ms = ms);
    }

    /// Moves every unfinished remediation `steps` steps.
    pub fn advance(&self, steps: u32) {
        self.with_state(|s| s.advance(steps));
    }

    /// The server clock (ms).
    pub fn now_ms(&self) -> i64 {
        self.with_state(|s| s.clock_ms)
    }

    /// Every request seen so far.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.with_state(|s| s.log.clone())
    }

    /// How many logged requests have this method and a path starting with `prefix`.
    pub fn count(&self, method: &str, prefix: &str) -> usize {
        self.with_state(|s| {
            s.log
                .iter()
                .filter(|r| r.method == method && r.path.starts_with(prefix))
                .count()
        })
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.with_state(|s| s.log.clear());
    }

    /// Stops the server and waits for it, then gives queued syslog events a moment to be
    /// written.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let events = self.with_state(|s| s.events.take());
        if let Some(events) = events {
            events.shutdown(SYSLOG_GRACE).await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// `riposte sim`: run the simulator until Ctrl-C.
#[derive(Clone, Debug, clap::Args)]
pub struct SimArgs {
    /// Address to listen on; keep it on loopback (the control API under /sim/ has no auth).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Seed of the generated data: the same seed gives the same Malops, machines and ids.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of Malops to generate (ransomware, known malware, blacklisted hash, lateral movement).
    #[arg(long, default_value_t = 8)]
    pub malops: usize,
    /// The user that can log in.
    #[arg(long, default_value = "analyst@riposte.local")]
    pub username: String,
    /// File holding the password (first line). Without it, RIPOSTE_PASSWORD is used.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Answer a good password with the two-factor page.
    #[arg(long)]
    pub two_factor: bool,
    /// Remediation steps per progress/status poll (PENDING → IN_PROGRESS → final takes 2).
    #[arg(long, default_value_t = 1)]
    pub steps_per_poll: u32,
    /// Fail the first N API requests with HTTP 500.
    #[arg(long, default_value_t = 0)]
    pub fail_500: u32,
    /// Fail the first N API requests with HTTP 429.
    #[arg(long, default_value_t = 0)]
    pub fail_429: u32,
    /// Answer the first N API requests with garbage bytes.
    #[arg(long, default_value_t = 0)]
    pub garbage: u32,
    /// Answer the first N API requests with truncated JSON.
    #[arg(long, default_value_t = 0)]
    pub truncated: u32,
    /// Answer every API request this many milliseconds after it arrived, as a real tenant
    /// across a network does (requests in flight wait side by side, not in turn).
    #[arg(long, default_value_t = 0, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub latency_ms: u64,
    /// Delay the next --delay-count answers (default: every answer) by this many milliseconds
    /// more, a fault queued before the others.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// How many requests --delay-ms applies to (default: all).
    #[arg(long)]
    pub delay_count: Option<u32>,
    /// Start with this sensor offline (pylumId, machine guid or host name; repeatable).
    #[arg(long)]
    pub offline: Vec<String>,
    /// Refuse every investigation (visualsearch) query with a failure body, as a server does
    /// for an API user without investigation rights.
    #[arg(long)]
    pub refuse_investigation: bool,
    /// The most results one crimes/unified answer holds (a real server's: 10,000).
    #[arg(long, default_value_t = SERVER_RESULT_LIMIT)]
    pub result_limit: usize,
    /// Send a CEF syslog event (`Malop Created` / `Malop Updated`) for every Malop created
    /// or updated at run time to this collector, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub syslog: Option<String>,
    /// How to reach the --syslog collector: tcp (newline framing, as Cybereason servers
    /// send), udp, or tls (with --syslog-ca).
    #[arg(long, value_parser = parse_transport, default_value = "tcp", requires = "syslog")]
    pub syslog_transport: SenderTransport,
    /// CA certificates (PEM) the TLS collector's certificate must chain to.
    #[arg(long, requires = "syslog")]
    pub syslog_ca: Option<PathBuf>,
    /// The events' header and CEF dialect: vendor (RFC 3164 + CEF:1) or forwarder
    /// (RFC 5424 + CEF:0).
    #[arg(long, value_enum, default_value_t = SimEventStyle::Vendor, requires = "syslog")]
    pub syslog_style: SimEventStyle,
}

fn parse_transport(text: &str) -> Result<SenderTransport, String> {
    match text {
        "tcp" => Ok(SenderTransport::Tcp),
        "udp" => Ok(SenderTransport::Udp),
        "tls" => Ok(SenderTransport::Tls),
        other => Err(format!("`{other}`: tcp, udp or tls")),
    }
}

impl SimArgs {
    /// The configuration these flags describe (reads the password).
    pub fn to_config(&self) -> anyhow::Result<SimConfig> {
        let password = match &self.password_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --password-file {}", path.display()))?
                .lines()
                .next()
                .unwrap_or("")
                .to_owned(),
            None => std::env::var(PASSWORD_ENV)
                .context("give --password-file or set RIPOSTE_PASSWORD")?,
        };
        anyhow::ensure!(!password.is_empty(), "the simulator password is empty");
        let mut faults = Vec::new();
        for (kind, count) in [
            (FaultKind::Status500, self.fail_500),
            (FaultKind::Status429, self.fail_429),
            (FaultKind::Garbage, self.garbage),
            (FaultKind::Truncated, self.truncated),
        ] {
            if count > 0 {
                faults.push(Fault::new(kind, count).on("/rest/"));
            }
        }
        if self.delay_ms > 0 {
            let n = self.delay_count.unwrap_or(u32::MAX);
            faults.push(Fault::new(FaultKind::Delay, n).delay_ms(self.delay_ms));
        }
        let syslog = self.syslog.as_ref().map(|address| {
            let mut sender = SenderConfig::new(self.syslog_transport, address.clone());
            sender.framing = Framing::Newline;
            sender.ca_file = self.syslog_ca.clone();
            SimSyslog {
                sender,
                style: self.syslog_style,
            }
        });
        Ok(SimConfig {
            listen: self.listen,
            seed: self.seed,
            malops: self.malops,
            username: self.username.clone(),
            password,
            two_factor: self.two_factor,
            steps_per_poll: self.steps_per_poll,
            faults,
            offline: self.offline.clone(),
            refuse_investigation: self.refuse_investigation,
            latency_ms: self.latency_ms,
            result_limit: self.result_limit.max(1),
            syslog,
            ..SimConfig::default()
        })
    }
}

/// Runs the simulator until Ctrl-C, printing its base URL.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let handle = Simulator::start(args.to_config()?).await?;
    println!("riposte simulator listening on {}", handle.base_url());
    println!("control API: {}/sim/ (loopback only)", handle.base_url());
    if let Some(syslog) = &args.syslog {
        println!(
            "Malop events (CEF over syslog, {:?}) go to {syslog}",
            args.syslog_transport
        );
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    handle.shutdown().await;
    Ok(())
}
