//! Webhook notifications: riposte tells people when an approval is needed, an action fails,
//! a plugin is paused, a budget trips or a time-boxed containment is about to revert.
//!
//! - [`config`] owns `[notifications]` (`NotificationsConfig`): the webhooks, their format
//!   (riposte's JSON or Slack's incoming webhook), the events each receives, and the
//!   optional owner-only credentials file holding a secret URL or a bearer token.
//! - [`Event`] is what is notified; its bodies carry ids, names, counts and one-line clipped
//!   texts, never a secret ([`event`]).
//! - [`Notifier`] never holds up the service: a bounded queue and a posting task per
//!   webhook, retries with backoff and jitter on connection errors, timeouts, 429 and 5xx.
//!   A stopping process delivers what is queued within a deadline ([`Notifier::shutdown`]);
//!   each webhook's counters ([`Notifier::stats_reader`]) feed the metrics endpoint.
//!
//! It knows nothing of the service's types (ids come from `riposte-domain`): the service
//! builds events where things happen and hands them to [`Notifier::notify`].

pub mod config;
pub mod event;
mod notifier;

pub use config::{EventKind, Format, NotificationsConfig, RawNotifications, WebhookConfig};
pub use event::{BudgetOwner, Event, describe};
pub use notifier::{Error, Flushed, Notifier, StatsReader, WebhookStats};
