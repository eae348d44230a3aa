//! The host `describe` runs against: it refuses every import. `describe` runs when a plugin is
//! loaded, before the operator's grants apply and with no quotas, so nothing it does may
//! reach the server, the ledger or memory the host keeps (a `describe` looping on `kv.set`
//! would otherwise pile its values up in the host for as long as its time limit lasts).

use super::host_api::{BoxFuture, CallContext, LogLevel, PluginHost};
use riposte_domain::{CallError, Malop, MalopId, Receipt, RemediationProgress, TimestampMs};

/// Refuses every import of a `describe` call; its log lines go to riposte's log at debug.
pub(crate) struct DescribeHost;

fn refused() -> CallError {
    CallError::Denied("describe may not call the host: it only says what the plugin is".into())
}

impl PluginHost for DescribeHost {
    fn list_malops<'a>(
        &'a self,
        _call: &'a CallContext,
        _since: TimestampMs,
        _until: TimestampMs,
    ) -> BoxFuture<'a, Result<Vec<Malop>, CallError>> {
        Box::pin(async { Err(refused()) })
    }

    fn get_malop<'a>(
        &'a self,
        _call: &'a CallContext,
        _id: MalopId,
    ) -> BoxFuture<'a, Result<Malop, CallError>> {
        Box::pin(async { Err(refused()) })
    }

    fn act<'a>(
        &'a self,
        _call: &'a CallContext,
        _request: riposte_domain::ActionRequest,
        _reason: String,
    ) -> BoxFuture<'a, Result<Receipt, CallError>> {
        Box::pin(async { Err(refused()) })
    }

    fn remediation_status<'a>(
        &'a self,
        _call: &'a CallContext,
        _action_id: String,
    ) -> BoxFuture<'a, Result<RemediationProgress, CallError>> {
        Box::pin(async { Err(refused()) })
    }

    fn kv_get(&self, _call: &CallContext, _key: &str) -> Option<Vec<u8>> {
        None
    }

    fn kv_set(&self, _call: &CallContext, _key: &str, _value: Vec<u8>) -> Result<(), CallError> {
        Err(refused())
    }

    fn kv_delete(&self, _call: &CallContext, _key: &str) {}

    fn log(&self, call: &CallContext, level: LogLevel, message: &str) {
        tracing::debug!(plugin = %call.plugin.name, ?level, "describe: {message}");
    }
}
