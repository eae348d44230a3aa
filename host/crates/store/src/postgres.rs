//! The shared backend: one PostgreSQL database that several riposte hosts use at once.
//!
//! Connections come from an r2d2 pool of the `postgres` client (the blocking face of
//! tokio-postgres, by the same authors): the store's methods block by contract and run on
//! blocking threads, so a blocking client with a blocking pool fits them without a second
//! async runtime in the store.
//!
//! # Serialising writers across hosts
//!
//! A write transaction starts with `pg_advisory_xact_lock` on one key, held to its commit:
//! writers of every host run one after another, exactly as SQLite's `BEGIN IMMEDIATE`
//! serialises the processes sharing a file. In `READ COMMITTED` each statement then sees
//! every commit made before the lock was granted, so each check-then-write of the store
//! (a budget's room, a kv quota, an approval's state, a claim) is decided on the latest
//! state and no two hosts can both pass it. Reads take no lock and see one snapshot
//! (`REPEATABLE READ, READ ONLY`). The guarded `UPDATE ... WHERE state IN (...)` and the
//! unique action key hold on their own as a second line.
//!
//! # TLS
//!
//! Connections use rustls whenever the server offers TLS (`sslmode=prefer`, the driver's
//! default) or must (`sslmode=require`): the server's certificate chain and its host name are
//! always verified, against Mozilla's roots and the CA certificates of `ca_file` (libpq's
//! `verify-full`; `sslmode=verify-ca` and `verify-full` are accepted and mean `require`).
//! Only `sslmode=disable` sends in the clear.
//!
//! A deferred commit ([`Durability::Deferred`]) sets `synchronous_commit = off` for its
//! transaction: PostgreSQL's WAL is written in commit order, so like SQLite's it keeps a
//! prefix of the commits after a crash of the server, and any later durable commit makes it
//! durable.

use crate::sql::{Dialect, Row, Sql, ToValue, Tx, Value};
use crate::{Durability, Failure, Op};
use postgres::IsolationLevel;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use r2d2_postgres::PostgresConnectionManager;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The advisory lock every write transaction holds: "riposte" in ASCII.
const WRITE_LOCK: i64 = 0x0072_6970_6f73_7465;

/// Connections per host: the service's blocking pool runs a handful of store calls at once.
const POOL_SIZE: u32 = 8;

/// How long a call waits for a connection before it fails (the database is unreachable):
/// short, so that a host stops acting quickly instead of queueing work it cannot record.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

type Pool = r2d2::Pool<PostgresConnectionManager<MakeRustlsConnect>>;

/// The CA certificates of the PEM file `path`, or why they cannot be read.
pub(crate) fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read CA certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM CERTIFICATE block", path.display()));
    }
    Ok(certs)
}

/// The TLS side of a connection: rustls (ring) trusting Mozilla's roots and the
/// certificates of `ca_file`.
pub(crate) fn tls_connector(ca_file: Option<&Path>) -> Op<MakeRustlsConnect> {
    let invalid = |why: String| Failure::Refused(crate::Refusal::InvalidArgument(why));
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        for cert in read_ca_file(path).map_err(invalid)? {
            roots
                .add(cert)
                .map_err(|e| invalid(format!("a CA certificate of {}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS settings: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Runs blocking client work so that it can never stall or trip an async runtime: the
/// `postgres` client drives each call on a runtime of its own, which tokio refuses to
/// start on one of its async workers. On a multi-threaded runtime's worker the worker
/// steps aside first (`block_in_place`); anywhere else (a plain thread, a blocking-pool
/// thread) the work runs in place. A current-thread runtime cannot step aside: call the
/// store from `spawn_blocking` there.
pub(crate) fn off_async_workers<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// A pool of connections to one PostgreSQL database.
pub(crate) struct Database {
    /// Always `Some` until dropped (see the `Drop` impl).
    pool: Option<Pool>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.pool.as_ref().map(|p| p.state());
        f.debug_struct("Database")
            .field("connections", &state.as_ref().map(|s| s.connections))
            .field("idle", &state.as_ref().map(|s| s.idle_connections))
            .finish()
    }
}

impl Drop for Database {
    /// Closing a connection blocks on the client's own runtime: off the async workers too.
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            off_async_workers(move || drop(pool));
        }
    }
}

impl Database {
    /// Connects with `config` (its password included), TLS trusting the certificates of
    /// `ca_file` besides Mozilla's roots, and checks one connection works.
    pub(crate) fn connect(config: postgres::Config, ca_file: Option<&Path>) -> Op<Database> {
        let tls = tls_connector(ca_file)?;
        off_async_workers(|| Self::connect_here(config, tls))
    }

    fn connect_here(mut config: postgres::Config, tls: MakeRustlsConnect) -> Op<Database> {
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("riposte");
        // The server's NOTICEs (a migration's "already exists, skipping") are not news.
        let quiet = "-c client_min_messages=warning";
        let options = match config.get_options() {
            Some(given) => format!("{given} {quiet}"),
            None => quiet.to_owned(),
        };
        config.options(&options);
        let manager = PostgresConnectionManager::new(config, tls);
        // One connection first, so that a failure keeps its cause (a refused certificate, a
        // wrong password) rather than the pool's one-line summary of it.
        drop(r2d2::ManageConnection::connect(&manager)?);
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(CONNECT_TIMEOUT)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(manager)
            .map_err(Failure::Unreachable)?;
        Ok(Database { pool: Some(pool) })
    }

    /// Runs `f` in a transaction and commits it if `f` returns `Ok`: a write transaction
    /// holding the write lock, with `durability`, or a read snapshot for `None`.
    pub(crate) fn transact(
        &self,
        durability: Option<Durability>,
        f: &mut dyn FnMut(&Tx<'_>) -> Op<()>,
    ) -> Op<()> {
        off_async_workers(|| self.transact_here(durability, f))
    }

    fn transact_here(
        &self,
        durability: Option<Durability>,
        f: &mut dyn FnMut(&Tx<'_>) -> Op<()>,
    ) -> Op<()> {
        let pool = self.pool.as_ref().ok_or_else(|| {
            Failure::Corrupt("the connection pool was used while being dropped".to_owned())
        })?;
        let mut client = pool.get().map_err(Failure::Unreachable)?;
        let tx = match durability {
            Some(durability) => {
                let tx = client
                    .build_transaction()
                    .isolation_level(IsolationLevel::ReadCommitted)
                    .start()?;
                let mut setup = format!("SELECT pg_advisory_xact_lock({WRITE_LOCK});");
                if durability == Durability::Deferred {
                    setup.push_str("SET LOCAL synchronous_commit = off;");
                }
                let mut tx = tx;
                tx.batch_execute(&setup)?;
                tx
            }
            None => client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?,
        };
        let tx = Transaction {
            tx: RefCell::new(tx),
        };
        f(&tx)?;
        tx.tx.into_inner().commit()?;
        Ok(())
    }
}

/// A PostgreSQL transaction, as the store's operations use it.
struct Transaction<'a> {
    tx: RefCell<postgres::Transaction<'a>>,
}

impl Sql for Transaction<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Op<usize> {
        let values = bind(params);
        let refs = as_params(&values);
        let sql = crate::sql::numbered_placeholders(sql);
        let changed = self.tx.borrow_mut().execute(sql.as_str(), &refs)?;
        Ok(usize::try_from(changed).unwrap_or(usize::MAX))
    }

    fn query(&self, sql: &str, params: &[&dyn ToValue]) -> Op<Vec<Row>> {
        let values = bind(params);
        let refs = as_params(&values);
        let sql = crate::sql::numbered_placeholders(sql);
        let rows = self.tx.borrow_mut().query(sql.as_str(), &refs)?;
        rows.iter().map(read_row).collect()
    }
}

fn bind(params: &[&dyn ToValue]) -> Vec<Value> {
    params.iter().map(|p| p.to_value()).collect()
}

fn as_params(values: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

fn read_row(row: &postgres::Row) -> Op<Row> {
    let values = row
        .columns()
        .iter()
        .enumerate()
        .map(|(i, column)| read_column(row, i, column.type_()))
        .collect::<Op<Vec<_>>>()?;
    Ok(Row::new(values))
}

fn read_column(row: &postgres::Row, i: usize, ty: &Type) -> Op<Value> {
    let integer = |n: Option<i64>| n.map_or(Value::Null, Value::Integer);
    Ok(match *ty {
        Type::INT8 => integer(row.try_get(i)?),
        Type::INT4 => integer(row.try_get::<_, Option<i32>>(i)?.map(i64::from)),
        Type::INT2 => integer(row.try_get::<_, Option<i16>>(i)?.map(i64::from)),
        Type::BOOL => integer(row.try_get::<_, Option<bool>>(i)?.map(i64::from)),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => row
            .try_get::<_, Option<String>>(i)?
            .map_or(Value::Null, Value::Text),
        Type::BYTEA => row
            .try_get::<_, Option<Vec<u8>>>(i)?
            .map_or(Value::Null, Value::Blob),
        ref other => {
            return Err(Failure::Corrupt(format!(
                "column {i} is of type {other}, which the store does not read (cast it to BIGINT or TEXT)"
            )));
        }
    })
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match (self, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Integer(n), &Type::INT8) => n.to_sql(ty, out),
            (Value::Integer(n), &Type::INT4) => i32::try_from(*n)?.to_sql(ty, out),
            (Value::Integer(n), &Type::INT2) => i16::try_from(*n)?.to_sql(ty, out),
            (Value::Integer(n), &Type::BOOL) => (*n != 0).to_sql(ty, out),
            (Value::Text(text), _) if <&str as ToSql>::accepts(ty) => text.as_str().to_sql(ty, out),
            (Value::Blob(bytes), &Type::BYTEA) => bytes.as_slice().to_sql(ty, out),
            (value, _) => Err(format!("{} bound to a parameter of type {ty}", value.kind()).into()),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [
            &Type::INT8,
            &Type::INT4,
            &Type::INT2,
            &Type::BOOL,
            &Type::BYTEA,
        ]
        .contains(&ty)
            || <&str as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}
