//! The simulated server a replay case runs against: an in-process simulator on loopback that
//! holds exactly the fixture's Malops, reached through the real client. The plugin sees the
//! Malops as the service would after fetching them from a server, and its queries take the
//! same path as in production (login, `crimes/unified`, visualsearch, `sensors/query`).

use riposte_client::{Client, ClientConfig, Credentials};
use riposte_domain::{CallError, Malop, MalopId, TimestampMs};
use riposte_runtime::{BoxFuture, MalopSource};
use riposte_sim::{SimHandle, SimState, Simulator, Unservable};
use std::net::SocketAddr;

/// The seed of the ids the simulator makes at run time (fixed: replays are deterministic).
const SEED: u64 = 1;
/// The replay's login (the simulator is private to the case; the password is random).
const USERNAME: &str = "replay@riposte.local";

/// Why a case's simulated server cannot serve its fixture as recorded.
#[derive(Debug, thiserror::Error)]
pub enum ReplayServerError {
    /// A fixture Malop cannot be held by a server as recorded.
    #[error("a server could not hold it as recorded: {0}")]
    Unservable(#[from] Unservable),
    /// The simulator did not start (e.g. no loopback port).
    #[error("cannot start the simulated server on loopback: {0:#}")]
    Start(anyhow::Error),
    /// The client could not be built.
    #[error("cannot build the client of the simulated server: {0}")]
    Client(riposte_client::Error),
    /// Fetching a Malop back failed.
    #[error("the simulated server could not serve Malop {malop}: {source}")]
    Fetch {
        /// The Malop.
        malop: MalopId,
        /// What the client met.
        source: riposte_client::Error,
    },
    /// A Malop came back different from its recording: the plugin would not see the fixture.
    #[error(
        "Malop {malop} does not come back from a server as recorded (- recorded, + as the service would offer it):\n{diff}A server cannot express this part of the recording: change the fixture to what the server would send"
    )]
    Changed {
        /// The Malop.
        malop: MalopId,
        /// A unified diff of the two, as JSON.
        diff: String,
    },
}

/// A running simulated server and a logged-in client for it. Dropping it stops the server.
pub struct ReplayServer {
    client: Client,
    _sim: SimHandle,
}

impl ReplayServer {
    /// Starts a simulator holding `malops`, its clock at `now`.
    pub async fn start(malops: &[Malop], now: TimestampMs) -> Result<Self, ReplayServerError> {
        let password = uuid::Uuid::new_v4().to_string();
        let state = SimState::from_recorded(malops, SEED, now, USERNAME.into(), password.clone())?;
        let sim = Simulator::serve(SocketAddr::from(([127, 0, 0, 1], 0)), state)
            .await
            .map_err(ReplayServerError::Start)?;
        let config = ClientConfig::new(sim.base_url(), Credentials::new(USERNAME, password));
        let client = Client::new(config).map_err(ReplayServerError::Client)?;
        Ok(Self { client, _sim: sim })
    }

    /// The Malop as the service offers it to plugins: `recorded`, fetched back in full detail
    /// by the client. It must come back as recorded, up to [`as_served`]; otherwise the
    /// plugin would be tested on something else than the fixture.
    pub async fn offer(&self, recorded: &Malop) -> Result<Malop, ReplayServerError> {
        let served = self
            .client
            .get_malop_details(&recorded.id)
            .await
            .map_err(|source| ReplayServerError::Fetch {
                malop: recorded.id.clone(),
                source,
            })?;
        let (expected, actual) = (as_served(recorded.clone()), as_served(served.clone()));
        if expected != actual {
            return Err(ReplayServerError::Changed {
                malop: recorded.id.clone(),
                diff: json_diff(&expected, &actual),
            });
        }
        Ok(served)
    }
}

/// What a trip through a server does to a Malop that loses nothing: element results come back
/// ordered by guid, IP addresses and domains sorted and without repeats.
pub fn as_served(mut malop: Malop) -> Malop {
    malop.suspects.sort_by(|a, b| a.guid.cmp(&b.guid));
    malop.files.sort_by(|a, b| a.guid.cmp(&b.guid));
    for list in [&mut malop.ip_addresses, &mut malop.domains] {
        list.sort();
        list.dedup();
    }
    malop
}

fn json_diff(expected: &Malop, actual: &Malop) -> String {
    let pretty = |m: &Malop| {
        let mut text = serde_json::to_string_pretty(m).expect("a Malop serializes");
        text.push('\n');
        text
    };
    let (old, new) = (pretty(expected), pretty(actual));
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(2)
        .to_string()
}

impl MalopSource for ReplayServer {
    fn list(
        &self,
        since: TimestampMs,
        until: TimestampMs,
    ) -> BoxFuture<'_, Result<Vec<Malop>, CallError>> {
        Box::pin(async move {
            Ok(self
                .client
                .malops_updated_in(since, until, riposte_domain::bounds::MAX_LIST_QUERIES)
                .await?)
        })
    }

    fn get(&self, id: MalopId) -> BoxFuture<'_, Result<Malop, CallError>> {
        Box::pin(async move { Ok(self.client.get_malop_details(&id).await?) })
    }
}
