//! Serving the console: plain HTTP (loopback, or behind a TLS proxy) or HTTPS with rustls
//! (ring, like the rest of the tree), one task per connection.

use crate::{Console, Error};
use axum::extract::ConnectInfo;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once, at most (more wait in the accept queue).
const MAX_CONNECTIONS: usize = 256;

/// The console being served; dropping it stops serving.
pub struct ConsoleServer {
    addr: SocketAddr,
    tls: bool,
    task: tokio::task::JoinHandle<()>,
}

impl ConsoleServer {
    /// The address served.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The console's address for a browser on this machine.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }
}

impl Drop for ConsoleServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Console {
    /// Serves a console over `service` (its configuration, store and audit trail) at
    /// `settings`' address, and points the service's notifications at its pages: under
    /// `[console] public_url`, else the address it serves.
    pub async fn serve_for(
        settings: crate::ConsoleConfig,
        service: &riposte_service::Service,
    ) -> Result<ConsoleServer, Error> {
        let public_url = settings.public_url.clone();
        let server = Console::new(
            settings,
            Arc::new(service.config().clone()),
            service.store().clone(),
            service.auditor().clone(),
        )?
        .serve()
        .await?;
        let public = public_url.unwrap_or_else(|| server.url());
        match url::Url::parse(&public) {
            Ok(link) => service.notifier().link_to(link),
            Err(e) => tracing::warn!("notifications carry no console link: `{public}`: {e}"),
        }
        Ok(server)
    }

    /// Serves the console at its configured address (`[console] listen`).
    pub async fn serve(self) -> Result<ConsoleServer, Error> {
        let addr = self.inner().settings.listen;
        let listener = TcpListener::bind(addr).await.map_err(|source| Error::Io {
            what: format!("listening on {addr}"),
            source,
        })?;
        self.serve_on(listener)
    }

    /// Serves the console on a bound listener. Refuses plain HTTP on a non-loopback address
    /// unless `insecure_http_behind_proxy` is set.
    pub fn serve_on(self, listener: TcpListener) -> Result<ConsoleServer, Error> {
        let addr = listener.local_addr().map_err(|source| Error::Io {
            what: "reading the listening address".into(),
            source,
        })?;
        let settings = &self.inner().settings;
        let acceptor = match &settings.tls {
            Some(files) => Some(tls_acceptor(files)?),
            None if !addr.ip().is_loopback() && !settings.insecure_http_behind_proxy => {
                return Err(Error::Refused(format!(
                    "refusing to serve plain HTTP on {addr}, which is not a loopback address: \
                     configure [console] tls, or insecure_http_behind_proxy = true behind a TLS proxy"
                )));
            }
            None => None,
        };
        let tls = acceptor.is_some();
        let router = self.router();
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        let task = tokio::spawn(async move {
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!("console: accepting a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let service = router.clone().layer(axum::Extension(ConnectInfo(peer)));
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let service = TowerToHyperService::new(service);
                    let builder = hyper::server::conn::http1::Builder::new();
                    let served = match acceptor {
                        Some(acceptor) => {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(tls)) => {
                                    builder.serve_connection(TokioIo::new(tls), service).await
                                }
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, "console: TLS handshake failed: {e}");
                                    return;
                                }
                                Err(_) => return,
                            }
                        }
                        None => {
                            builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await
                        }
                    };
                    if let Err(e) = served {
                        tracing::debug!(%peer, "console: connection ended: {e}");
                    }
                });
            }
        });
        tracing::info!(%addr, tls, "serving the console");
        Ok(ConsoleServer { addr, tls, task })
    }
}

fn tls_acceptor(files: &crate::config::TlsFiles) -> Result<tokio_rustls::TlsAcceptor, Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert_file)
        .and_then(|certs| certs.collect())
        .map_err(|e| Error::Tls(format!("reading {}: {e}", files.cert_file.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "{} holds no certificate",
            files.cert_file.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|e| Error::Tls(format!("reading {}: {e}", files.key_file.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(format!("{}: {e}", files.cert_file.display())))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
