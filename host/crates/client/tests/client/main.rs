//! Integration tests of riposte-client, gathered in one binary.

mod client_parse_fuzz;
mod client_sim;
