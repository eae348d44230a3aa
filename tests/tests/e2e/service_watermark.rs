//! No Malop is dropped (G4): a Malop that a plugin trapped on, or skipped while paused, keeps
//! the watermark below it, so it is offered again when the plugin recovers, however far the
//! poll has moved on and however long the pause outlasts the overlap window.

use riposte_domain::now_ms;
use riposte_domain::{ElementKind, MalopId, PluginName};
use riposte_e2e::service_support::{PluginSpec, ServiceEnv, Setup, start_sim};
use riposte_store::prelude::*;

const OVERLAP_MS: i64 = 60_000;

each_backend! {
    async fn malops_a_plugin_trapped_on_are_offered_again_after_its_pause(db) {
        let sim = start_sim(11, 8).await;
        let malops = sim.malops();
        let oldest = malops.iter().map(|m| m.last_update_time).min().unwrap();
        let newest = malops.iter().map(|m| m.last_update_time).max().unwrap();
        assert!(
            newest - oldest > OVERLAP_MS,
            "the seeded Malops span more than the overlap window"
        );
        let hostile = PluginName::new("hostile");

        // The plugin panics on every Malop: it traps three times, is paused, and owes them all.
        let trapping = ServiceEnv::on(db, &sim, &Setup::new(vec![PluginSpec::hostile("panic")]));
        let service = trapping.service(&sim).await;
        service.run_cycle().await.expect("a cycle runs");
        let store = trapping.store();
        assert!(
            store.paused_until("hostile", now_ms()).unwrap().is_some(),
            "paused after its traps"
        );
        for kind in ElementKind::ALL {
            let source = format!("crimes/unified:{}", kind.as_api());
            let owed_oldest = malops
                .iter()
                .filter(|m| m.kind == kind)
                .map(|m| m.last_update_time)
                .min();
            if let (Some(watermark), Some(owed)) = (store.watermark(&source).unwrap(), owed_oldest) {
                assert!(
                    watermark < owed,
                    "{source}: the watermark {watermark} stays below the owed Malop at {owed}"
                );
            }
        }
        service
            .run_cycle()
            .await
            .expect("a cycle while paused runs");
        drop(service);

        // The operator fixes the plugin (same database, a version that completes) and the pause
        // is over: every Malop it owed is offered again and handled.
        store.record_success("hostile").unwrap();
        trapping.reconfigure(&sim, &Setup::new(vec![PluginSpec::hostile("env")]));
        let service = trapping.service(&sim).await;
        service.run_cycle().await.expect("a cycle runs");
        for malop in &malops {
            assert!(
                store
                    .is_handled(
                        &hostile,
                        &MalopId::new(malop.guid.clone()),
                        malop.last_update_time,
                        None
                    )
                    .unwrap(),
                "Malop {} (updated {}) was offered again and handled",
                malop.guid,
                malop.last_update_time
            );
        }
    }
}
