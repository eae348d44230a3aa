//! Each invocation runs on a task of its own (issue 15, section 2):
//! - invocations awaited together run at the same moment on different threads, so a
//!   multi-threaded runtime spreads the plugins over its workers instead of taking turns on
//!   the caller's thread. No timing: each plugin's first action blocks the thread running it
//!   until the other invocation is inside its own first action; invocations taking turns on
//!   one thread would never meet (the first would wait out the limit alone);
//! - a panic of the host's own code during an invocation ends that task, and the invocation
//!   is reported as the host's failure, not as the plugin's trap.

use riposte_domain::{
    ActionRequest, CallError, Malop, MalopId, Receipt, RemediationProgress, TimestampMs,
};
use riposte_e2e::{fixture, load, runtime};
use riposte_runtime::{
    BoxFuture, CallContext, Entry, Limits, LogLevel, Outcome, PluginHost, RecordedCall,
    RecordingHost,
};
use std::collections::BTreeSet;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

/// How long one invocation waits for the other at most.
const LIMIT: Duration = Duration::from_secs(20);

/// A recording host that runs `before_act` (on the thread running the plugin) before each
/// action, and fails the action when it says so.
struct ActHook<F> {
    inner: RecordingHost,
    before_act: F,
}

/// Invocations that wait, blocking their thread, until `parties` of them reached their
/// first action.
struct Rendezvous {
    parties: usize,
    /// The threads that arrived, and whether all parties met.
    state: Mutex<(BTreeSet<ThreadIdKey>, usize, bool)>,
    met: Condvar,
}

/// A thread id, ordered by its debug form (ThreadId has no order of its own).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ThreadIdKey(String);

impl From<ThreadId> for ThreadIdKey {
    fn from(id: ThreadId) -> Self {
        Self(format!("{id:?}"))
    }
}

impl Rendezvous {
    /// Waits (blocking this thread) until every party arrived; whether they all did in time.
    fn meet(&self) -> bool {
        let mut state = self.state.lock().unwrap();
        if state.2 {
            return true;
        }
        state.0.insert(std::thread::current().id().into());
        state.1 += 1;
        if state.1 >= self.parties {
            state.2 = true;
            self.met.notify_all();
            return true;
        }
        let (state, _) = self.met.wait_timeout_while(state, LIMIT, |s| !s.2).unwrap();
        state.2
    }
}

impl<F: Fn() -> Result<(), CallError> + Send + Sync + 'static> PluginHost for ActHook<F> {
    fn list_malops<'a>(
        &'a self,
        call: &'a CallContext,
        since: TimestampMs,
        until: TimestampMs,
    ) -> BoxFuture<'a, Result<Vec<Malop>, CallError>> {
        self.inner.list_malops(call, since, until)
    }

    fn get_malop<'a>(
        &'a self,
        call: &'a CallContext,
        id: MalopId,
    ) -> BoxFuture<'a, Result<Malop, CallError>> {
        self.inner.get_malop(call, id)
    }

    fn act<'a>(
        &'a self,
        call: &'a CallContext,
        request: ActionRequest,
        reason: String,
    ) -> BoxFuture<'a, Result<Receipt, CallError>> {
        Box::pin(async move {
            (self.before_act)()?;
            self.inner.act(call, request, reason).await
        })
    }

    fn remediation_status<'a>(
        &'a self,
        call: &'a CallContext,
        action_id: String,
    ) -> BoxFuture<'a, Result<RemediationProgress, CallError>> {
        self.inner.remediation_status(call, action_id)
    }

    fn kv_get(&self, call: &CallContext, key: &str) -> Option<Vec<u8>> {
        self.inner.kv_get(call, key)
    }

    fn kv_set(&self, call: &CallContext, key: &str, value: Vec<u8>) -> Result<(), CallError> {
        self.inner.kv_set(call, key, value)
    }

    fn kv_delete(&self, call: &CallContext, key: &str) {
        self.inner.kv_delete(call, key)
    }

    fn log(&self, call: &CallContext, level: LogLevel, message: &str) {
        self.inner.log(call, level, message)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_invocations_awaited_together_run_at_once_on_two_threads() {
    let (runtime, cache) = runtime();
    let plugin = load(&runtime, &cache, "ransomware-containment");
    let malop = fixture("ransomware");
    let rendezvous = Arc::new(Rendezvous {
        parties: 2,
        state: Mutex::new((BTreeSet::new(), 0, false)),
        met: Condvar::new(),
    });
    let meeting = rendezvous.clone();
    let host = Arc::new(ActHook {
        inner: RecordingHost::new([malop.clone()]),
        // Plain blocking, on purpose: the thread running this plugin is held.
        before_act: move || {
            if meeting.meet() {
                Ok(())
            } else {
                Err(CallError::ServerError(
                    "the other invocation never came".into(),
                ))
            }
        },
    });
    let limits = Limits {
        wall_clock: LIMIT * 2,
        ..Limits::default()
    };
    let invoke = || {
        let call = CallContext::for_malop(plugin.identity(), &malop, Default::default());
        runtime.invoke(
            &plugin,
            &limits,
            host.clone() as Arc<dyn PluginHost>,
            call,
            Entry::Malop(&malop),
        )
    };
    let (first, second) = tokio::join!(invoke(), invoke());
    for report in [&first, &second] {
        assert!(
            matches!(report.outcome, Outcome::Completed),
            "both invocations met and completed: {:?}",
            report.outcome
        );
    }
    let state = rendezvous.state.lock().unwrap();
    assert!(
        state.2,
        "the two invocations were inside their plugins at once"
    );
    assert_eq!(
        state.0.len(),
        2,
        "on two threads at the same moment: {:?}",
        state.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_of_the_host_during_an_invocation_is_the_hosts_failure_not_a_trap() {
    let (runtime, cache) = runtime();
    let plugin = load(&runtime, &cache, "ransomware-containment");
    let malop = fixture("ransomware");
    let host = Arc::new(ActHook {
        inner: RecordingHost::new([malop.clone()]),
        before_act: || -> Result<(), CallError> { panic!("a bug in the host's action path") },
    });
    let limits = Limits::default();
    let invoke = |host: Arc<dyn PluginHost>| {
        let call = CallContext::for_malop(plugin.identity(), &malop, Default::default());
        runtime.invoke(&plugin, &limits, host, call, Entry::Malop(&malop))
    };
    let report = invoke(host.clone()).await;
    match &report.outcome {
        Outcome::HostFailure { error } => assert!(
            error.contains("a bug in the host's action path"),
            "the failure names the panic: {error}"
        ),
        other => panic!("a host panic is the host's failure, not {other:?}"),
    }
    assert!(!report.outcome.is_trap(), "not counted against the plugin");
    assert!(!report.outcome.ran_to_end(), "the Malop is not settled");
    let acted = |calls: Vec<RecordedCall>| {
        calls
            .into_iter()
            .filter(|c| matches!(c, RecordedCall::Action { .. }))
            .count()
    };
    assert_eq!(acted(host.inner.calls()), 0, "no action went through");
    // The runtime goes on: the same plugin runs to its end on a sound host.
    let sound = Arc::new(RecordingHost::new([malop.clone()]));
    let report = invoke(sound.clone()).await;
    assert_eq!(report.outcome, Outcome::Completed);
    assert!(acted(sound.calls()) > 0, "it acted on the sound host");
}
