//! Integration tests of riposte-syslog, gathered in one binary: listener transports and
//! framings, hostile input, coalescing, the formatter and sender, configuration.

mod coalescing;
mod config;
mod hostile;
mod listener;
mod sender;
mod support;
mod vendor;
