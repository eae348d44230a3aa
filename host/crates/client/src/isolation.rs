//! `monitor/global/commands/isolate` and `un-isolate`.

use super::http::{Call, Safety};
use super::parse;
use super::{Client, Error, IsolationReport, Result};
use riposte_domain::{MalopId, PylumId};
use serde_json::json;

impl Client {
    /// Isolates machines by pylumId. Sent at most once (see [`Error::OutcomeUnknown`]).
    /// Per-machine outcomes are in the report (`Primed` = offline, queued).
    pub async fn isolate(
        &self,
        pylum_ids: &[PylumId],
        malop_id: Option<&MalopId>,
    ) -> Result<IsolationReport> {
        self.isolation_command("isolate", pylum_ids, malop_id).await
    }

    /// Releases machines from isolation (note the hyphen in `un-isolate`).
    pub async fn unisolate(
        &self,
        pylum_ids: &[PylumId],
        malop_id: Option<&MalopId>,
    ) -> Result<IsolationReport> {
        self.isolation_command("un-isolate", pylum_ids, malop_id)
            .await
    }

    async fn isolation_command(
        &self,
        command: &str,
        pylum_ids: &[PylumId],
        malop_id: Option<&MalopId>,
    ) -> Result<IsolationReport> {
        if pylum_ids.is_empty() {
            return Err(Error::Config(format!("{command}: no pylumId given")));
        }
        let mut body = json!({ "pylumIds": pylum_ids });
        if let Some(id) = malop_id {
            body["malopId"] = json!(id);
        }
        let call = Call::post(
            format!("/rest/monitor/global/commands/{command}"),
            body,
            Safety::Once,
        );
        // A 400 naming NO_MATCHING_SENSORS is `Error::NoMatchingSensors` (see `http_error`).
        let report = self.fetch(call, parse::isolation).await?;
        Ok(report.account_for(pylum_ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IsolationStatus;

    #[test]
    fn a_sensor_the_answer_leaves_out_is_not_counted_as_isolated() {
        let sent = [PylumId::new("P-a"), PylumId::new("P-b")];
        let answer = br#"{"P-a": "Succeeded"}"#;
        let report = parse::isolation(answer).unwrap().account_for(&sent);
        assert_eq!(report.outcomes[&sent[0]], IsolationStatus::Succeeded);
        assert_eq!(report.outcomes[&sent[1]], IsolationStatus::Unanswered);
        assert!(!report.outcomes[&sent[1]].is_applied_or_queued());
        assert!(
            !report.all_applied() && !report.none_refused(),
            "one of two sensors is unaccounted for"
        );
        let both = parse::isolation(br#"{"P-a": "Succeeded", "P-b": "Primed"}"#)
            .unwrap()
            .account_for(&sent);
        assert!(both.none_refused(), "a queued command is not refused");
        assert!(!both.all_applied(), "nor is it applied yet");
        assert_eq!(both.queued().collect::<Vec<_>>(), [&sent[1]]);
    }

    #[test]
    fn sensors_the_answer_adds_are_kept_within_bounds() {
        let sent = [PylumId::new("P-a")];
        let mut answer = serde_json::Map::new();
        answer.insert("P-a".into(), json!("Succeeded"));
        answer.insert("x".repeat(300), json!("Failed"));
        for i in 0..100 {
            answer.insert(format!("P-extra-{i:03}"), json!("Failed"));
        }
        let body = serde_json::to_vec(&answer).unwrap();
        let report = parse::isolation(&body).unwrap().account_for(&sent);
        assert_eq!(report.outcomes[&sent[0]], IsolationStatus::Succeeded);
        assert_eq!(report.outcomes.len(), 1 + 16, "the sent one and 16 others");
        assert!(report.outcomes.keys().all(|k| k.as_str().len() <= 256));
        assert!(
            !report.none_refused(),
            "an extra sensor's failure still counts"
        );
    }

    #[test]
    fn a_status_envelope_is_the_servers_failure_not_a_sensor() {
        let failed = parse::isolation(br#"{"status": "FAILURE", "message": "no permission"}"#);
        match failed {
            Err(parse::ResponseError::Failure { status, message }) => {
                assert_eq!(status, "FAILURE");
                assert_eq!(message, "no permission");
            }
            other => panic!("expected the server's failure, got {other:?}"),
        }
        let empty = parse::isolation(br#"{"status": "SUCCESS"}"#);
        assert!(
            matches!(&empty, Err(parse::ResponseError::Malformed { .. })),
            "a SUCCESS envelope names no sensor: {empty:?}"
        );
        let flood = "m".repeat(1 << 20);
        let refused = parse::isolation(
            format!(r#"{{"status": "FAILURE", "message": "{flood}"}}"#).as_bytes(),
        );
        match refused {
            Err(parse::ResponseError::Failure { message, .. }) => {
                assert!(message.len() < 2_200, "{} bytes kept", message.len())
            }
            other => panic!("expected the server's failure, got {other:?}"),
        }
        let long = "x".repeat(10_000);
        let odd = parse::isolation(format!(r#"{{"P-a": "{long}"}}"#).as_bytes()).unwrap();
        match &odd.outcomes[&PylumId::new("P-a")] {
            IsolationStatus::Failed(s) => assert_eq!(s.len(), 64),
            other => panic!("{other:?}"),
        }
    }
}
