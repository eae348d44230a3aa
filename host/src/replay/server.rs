//! The simulated server a replay case runs against: an in-process simulator on loopback that
//! holds exactly the fixture's Malops, reached through the real client. The plugin sees the
//! Malops as the service would after fetching them from a server, and its queries take the
//! same path as in production (login, `crimes/unified`, visualsearch, `sensors/query`).

use crate::client::{Client, ClientConfig, Credentials};
use crate::domain::{CallError, Malop, MalopId, TimestampMs};
use crate::runtime::{BoxFuture, MalopSource};
use crate::sim::{SimHandle, SimState, Simulator, Unservable};
use std::net::SocketAddr;

/// The seed of the ids the simulator makes at run time (fixed: replays are deterministic).
const SEED: u64 = 1;
/// The replay's login (the simulator is private to the case; the password is random).
const USERNAME: &str = "replay@riposte.local";

/// Why a case's simulated server is not available.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A fixture Malop cannot be held by a server as recorded.
    #[error("a server could not hold it as recorded: {0}")]
    Unservable(#[from] Unservable),
    /// The simulator did not start (e.g. no loopback port).
    #[error("cannot start the simulated server on loopback: {0:#}")]
    Start(anyhow::Error),
    /// The client could not be built.
    #[error("cannot build the client of the simulated server: {0}")]
    Client(crate::client::Error),
}

/// A running simulated server and a logged-in client for it. Dropping it stops the server.
pub struct ReplayServer {
    client: Client,
    _sim: SimHandle,
}

impl ReplayServer {
    /// Starts a simulator holding `malops`, its clock at `now`.
    pub async fn start(malops: &[Malop], now: TimestampMs) -> Result<Self, ServerError> {
        let password = uuid::Uuid::new_v4().to_string();
        let state = SimState::from_recorded(malops, SEED, now, USERNAME.into(), password.clone())?;
        let sim = Simulator::serve(SocketAddr::from(([127, 0, 0, 1], 0)), state)
            .await
            .map_err(ServerError::Start)?;
        let config = ClientConfig::new(sim.base_url(), Credentials::new(USERNAME, password));
        let client = Client::new(config).map_err(ServerError::Client)?;
        Ok(Self { client, _sim: sim })
    }

    /// The Malop as the service offers it to plugins: fetched in full detail by the client.
    pub async fn offered(&self, id: &MalopId) -> Result<Malop, crate::client::Error> {
        self.client.get_malop_details(id).await
    }
}

impl MalopSource for ReplayServer {
    fn list(
        &self,
        since: TimestampMs,
        until: TimestampMs,
    ) -> BoxFuture<'_, Result<Vec<Malop>, CallError>> {
        Box::pin(async move { Ok(self.client.malops_updated_in(since, until).await?) })
    }

    fn get(&self, id: MalopId) -> BoxFuture<'_, Result<Malop, CallError>> {
        Box::pin(async move { Ok(self.client.get_malop_details(&id).await?) })
    }
}
