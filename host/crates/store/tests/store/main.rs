//! Integration tests of riposte-store, gathered in one binary.

/// Runs each test it wraps against a fresh database of both backends: `each_backend! { fn
/// name(db) { ... } }` becomes a module `name` with the tests `sqlite` and `postgres`.
macro_rules! each_backend {
    ($(fn $name:ident($db:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body($db: riposte_store::testing::TestDatabase) $body

            #[test]
            fn sqlite() {
                body(riposte_store::testing::TestDatabase::sqlite())
            }

            #[test]
            fn postgres() {
                body(riposte_store::testing::TestDatabase::postgres())
            }
        }
    )*};
}

mod store_concurrency;
mod store_copy;
mod store_durability;
mod store_flows;
mod store_tls;
