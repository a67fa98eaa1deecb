//! The demo's verdict: what each document was expected to reach, what it
//! reached, and the report `make demo` writes to `target/demo/report.json`.
//!
//! Everything here is a pure function of what the demo observed, so the
//! rules that decide whether the demo passes are unit-tested without a stack.

use std::collections::BTreeMap;

use serde::Serialize;

use super::plan::Channel;
use super::plan::PlannedDrop;

/// One route of one document, as observed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RouteResult {
    pub destination: String,
    /// The dispatch record's status (`done`, `retry`, `failed`, …), or `missing`.
    pub status: String,
    /// The destination's id of what was created or updated.
    pub remote_id: Option<String>,
    /// Successful create or update requests for this route that the sink received.
    pub deliveries: usize,
}

/// One document, as observed.
#[derive(Debug, Clone, Serialize)]
pub struct DocumentResult {
    pub file: String,
    pub key: String,
    pub channel: Channel,
    pub recordengine_id: Option<i64>,
    /// Destinations the webhook routed the export to.
    pub routes: Vec<String>,
    /// Destinations the bundled rules give for the payload the simulator sent.
    pub expected_routes: Vec<String>,
    pub rules_fired: Vec<String>,
    pub results: Vec<RouteResult>,
}

impl DocumentResult {
    /// Returns the result of a document that was dropped but not seen again.
    pub fn unseen(drop: &PlannedDrop) -> DocumentResult {
        DocumentResult {
            file: drop.name.clone(),
            key: drop.key.clone(),
            channel: drop.channel,
            recordengine_id: None,
            routes: Vec::new(),
            expected_routes: Vec::new(),
            rules_fired: Vec::new(),
            results: Vec::new(),
        }
    }
}

/// The injected destination fault and what became of it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DlqResult {
    /// The destination whose sink returned errors.
    pub destination: String,
    /// The fault, in words.
    pub fault: String,
    pub file: Option<String>,
    pub document_id: Option<i64>,
    pub failure_id: Option<String>,
    pub error_class: Option<String>,
    /// Deliveries SQS counted before the message went to the dead-letter queue.
    pub attempts: Option<i64>,
    pub error: Option<String>,
    /// Requests the sink rejected with the fault.
    pub faulted_requests: usize,
    /// Whether the dead-letter function sent an alert naming the failure.
    pub alerted: bool,
    /// Whether `bridgectl dlq redrive` sent the failure back to its queue.
    pub redriven: bool,
    /// Successful requests for the document at the sink after the redrive.
    pub delivered_after_redrive: usize,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub ok: bool,
    pub stack_name: String,
    pub ruleset_version: String,
    pub seconds: u64,
    pub documents: Vec<DocumentResult>,
    /// Rule name to the number of documents it fired for; every rule of the
    /// bundled set is listed, also with zero.
    pub rules_fired: BTreeMap<String, usize>,
    pub dlq: DlqResult,
    /// Reasons the demo failed, empty when `ok`.
    pub problems: Vec<String>,
}

/// Counts how many documents each rule fired for, listing every rule.
pub fn count_rules(rule_names: &[String], documents: &[DocumentResult]) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = rule_names.iter().map(|name| (name.clone(), 0)).collect();
    for document in documents {
        for rule in &document.rules_fired {
            *counts.entry(rule.clone()).or_default() += 1;
        }
    }
    counts
}

/// Lists every way the observation fails the demo's checks. Each
/// document must be uploaded, routed as the rules decide, and delivered
/// exactly once to each destination. Every rule must fire. The faulted
/// delivery must be dead-lettered, alerted, redriven and then delivered once.
pub fn problems(
    documents: &[DocumentResult],
    rules_fired: &BTreeMap<String, usize>,
    dlq: &DlqResult,
    minimum_documents: usize,
) -> Vec<String> {
    let mut problems = Vec::new();
    if documents.len() < minimum_documents {
        problems.push(format!(
            "only {} documents were dropped; the demo needs at least {minimum_documents}",
            documents.len()
        ));
    }

    for document in documents {
        let Some(id) = document.recordengine_id else {
            problems.push(format!(
                "{} ({}) never reached RecordEngine",
                document.file, document.key
            ));
            continue;
        };
        if document.routes.is_empty() {
            problems.push(format!("{} (#{id}) was not routed", document.file));
            continue;
        }
        let mut routed = document.routes.clone();
        routed.sort();
        let mut expected = document.expected_routes.clone();
        expected.sort();
        if routed != expected {
            problems.push(format!(
                "{} (#{id}) was routed to [{}], but the rules give [{}]",
                document.file,
                routed.join(", "),
                expected.join(", ")
            ));
        }
        for route in &document.routes {
            match document.results.iter().find(|result| &result.destination == route) {
                None => problems.push(format!("{} (#{id}): no result for {route}", document.file)),
                Some(result) if result.status != "done" => problems.push(format!(
                    "{} (#{id}): {route} ended as {}, not done",
                    document.file, result.status
                )),
                Some(result) if result.deliveries != 1 => problems.push(format!(
                    "{} (#{id}): {route} received {} successful requests, not exactly one",
                    document.file, result.deliveries
                )),
                Some(_) => {}
            }
        }
    }

    for (rule, count) in rules_fired {
        if *count == 0 {
            problems.push(format!("rule {rule} fired for no document"));
        }
    }

    match &dlq.failure_id {
        None => problems.push(format!(
            "the fault at {} left no failure record: nothing reached the dead-letter queue",
            dlq.destination
        )),
        Some(failure_id) => {
            if !dlq.alerted {
                problems.push(format!("failure {failure_id} was recorded but no alert was sent"));
            }
            if !dlq.redriven {
                problems.push(format!("failure {failure_id} was not redriven"));
            }
            if dlq.delivered_after_redrive != 1 {
                problems.push(format!(
                    "after the redrive, {} received {} successful requests for the document, not exactly one",
                    dlq.destination, dlq.delivered_after_redrive
                ));
            }
        }
    }
    problems
}

/// Renders the document table: file, RecordEngine id, routes and the result
/// per destination.
pub fn document_rows(documents: &[DocumentResult]) -> Vec<Vec<String>> {
    documents
        .iter()
        .map(|document| {
            let results = document
                .results
                .iter()
                .map(|result| {
                    let remote = result.remote_id.as_deref().unwrap_or("-");
                    let requests = if result.deliveries == 1 { "request" } else { "requests" };
                    format!(
                        "{}: {}, id {remote}, {} {requests}",
                        result.destination, result.status, result.deliveries
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            vec![
                document.file.clone(),
                document
                    .recordengine_id
                    .map(|id| format!("#{id}"))
                    .unwrap_or_else(|| "-".into()),
                if document.routes.is_empty() {
                    "-".into()
                } else {
                    document.routes.join(", ")
                },
                if results.is_empty() { "-".into() } else { results },
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(destination: &str) -> RouteResult {
        RouteResult {
            destination: destination.into(),
            status: "done".into(),
            remote_id: Some("1".into()),
            deliveries: 1,
        }
    }

    fn document(file: &str, id: i64, routes: &[&str], rules: &[&str]) -> DocumentResult {
        DocumentResult {
            file: file.into(),
            key: format!("inbox/5/12/{file}"),
            channel: Channel::Inbox,
            recordengine_id: Some(id),
            routes: routes.iter().map(|route| route.to_string()).collect(),
            expected_routes: routes.iter().map(|route| route.to_string()).collect(),
            rules_fired: rules.iter().map(|rule| rule.to_string()).collect(),
            results: routes.iter().map(|route| delivered(route)).collect(),
        }
    }

    fn redriven() -> DlqResult {
        DlqResult {
            destination: "crm".into(),
            failure_id: Some("dlq-1".into()),
            alerted: true,
            redriven: true,
            delivered_after_redrive: 1,
            ..DlqResult::default()
        }
    }

    fn rules() -> Vec<String> {
        vec!["low-confidence".into(), "approval-required".into()]
    }

    #[test]
    fn complete_run_has_no_problems() {
        let documents = vec![
            document("a.pdf", 1, &["alerts"], &["low-confidence"]),
            document("b.pdf", 2, &["accounting"], &["approval-required"]),
        ];
        let fired = count_rules(&rules(), &documents);

        assert_eq!(fired["low-confidence"], 1);
        assert!(problems(&documents, &fired, &redriven(), 2).is_empty());
    }

    #[test]
    fn rule_never_fired() {
        let documents = vec![document("b.pdf", 2, &["accounting"], &["approval-required"])];
        let fired = count_rules(&rules(), &documents);

        let found = problems(&documents, &fired, &redriven(), 1);

        assert_eq!(found, ["rule low-confidence fired for no document"]);
    }

    #[test]
    fn duplicate_and_missing_deliveries() {
        let mut twice = document("b.pdf", 2, &["accounting"], &["approval-required"]);
        twice.results[0].deliveries = 2;
        let mut pending = document("c.pdf", 3, &["crm"], &["approval-required"]);
        pending.results[0].status = "retry".into();
        let mut never = document("d.pdf", 4, &["alerts"], &["low-confidence"]);
        never.results.clear();
        let documents = vec![twice, pending, never];
        let fired = count_rules(&rules(), &documents);

        let found = problems(&documents, &fired, &redriven(), 3);

        assert_eq!(
            found,
            [
                "b.pdf (#2): accounting received 2 successful requests, not exactly one",
                "c.pdf (#3): crm ended as retry, not done",
                "d.pdf (#4): no result for alerts",
            ]
        );
    }

    #[test]
    fn route_differing_from_rules() {
        let mut wrong = document("b.pdf", 2, &["accounting"], &["approval-required"]);
        wrong.expected_routes = vec!["accounting".into(), "crm".into()];
        let documents = vec![wrong, document("a.pdf", 1, &["alerts"], &["low-confidence"])];
        let fired = count_rules(&rules(), &documents);

        let found = problems(&documents, &fired, &redriven(), 2);

        assert_eq!(
            found,
            ["b.pdf (#2) was routed to [accounting], but the rules give [accounting, crm]"]
        );
    }

    #[test]
    fn unseen_and_too_few_documents() {
        let drop = PlannedDrop {
            file: "x.pdf".into(),
            name: "x.pdf".into(),
            key: "inbox/5/12/x.pdf".into(),
            channel: Channel::Inbox,
            metadata: BTreeMap::new(),
            hubspot_record: None,
        };
        let documents = vec![DocumentResult::unseen(&drop)];
        let fired = count_rules(&[], &documents);

        let found = problems(&documents, &fired, &redriven(), 10);

        assert_eq!(
            found,
            [
                "only 1 documents were dropped; the demo needs at least 10",
                "x.pdf (inbox/5/12/x.pdf) never reached RecordEngine",
            ]
        );
    }

    #[test]
    fn fault_redriven_delivered_once() {
        let documents = vec![document("a.pdf", 1, &["alerts"], &["low-confidence"])];
        let fired = count_rules(&[], &documents);
        let missing = DlqResult {
            destination: "crm".into(),
            ..DlqResult::default()
        };
        let twice = DlqResult {
            alerted: false,
            delivered_after_redrive: 2,
            ..redriven()
        };

        assert_eq!(
            problems(&documents, &fired, &missing, 1),
            ["the fault at crm left no failure record: nothing reached the dead-letter queue"]
        );
        assert_eq!(
            problems(&documents, &fired, &twice, 1),
            [
                "failure dlq-1 was recorded but no alert was sent",
                "after the redrive, crm received 2 successful requests for the document, not exactly one",
            ]
        );
    }

    #[test]
    fn rows_show_each_result() {
        let rows = document_rows(&[document("a.pdf", 7, &["accounting", "crm"], &[])]);

        assert_eq!(rows[0][0], "a.pdf");
        assert_eq!(rows[0][1], "#7");
        assert_eq!(rows[0][2], "accounting, crm");
        assert_eq!(
            rows[0][3],
            "accounting: done, id 1, 1 request\ncrm: done, id 1, 1 request"
        );
    }
}
