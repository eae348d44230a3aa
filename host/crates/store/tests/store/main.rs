//! Integration tests of riposte-store, gathered in one binary.

mod store_concurrency;
mod store_durability;
mod store_flows;
