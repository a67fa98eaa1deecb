//! The bundled scenario file must stay faithful to the invoice fixtures it describes.
//!
//! To rebuild it after changing a fixture, run
//! `DEVSTACK_WRITE_SCENARIOS=1 cargo test -p bridge-devstack --test scenarios`.
//! The rebuild keeps the hand-written fields (doc_type, confidence, reasoning, custom fields).

use std::path::Path;

use bridge_devstack::Scenarios;
use bridge_devstack::scenario::{BUILTIN_SCENARIOS, DecimalText, scenarios_from_fixtures};

const FIXTURES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/invoices");
const SCENARIO_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/invoices.json");

fn amount(value: &Option<DecimalText>) -> Option<&str> {
    value.as_ref().map(DecimalText::as_str)
}

#[test]
fn scenario_file_matches_fixtures() {
    let existing = Scenarios::load(Path::new(SCENARIO_FILE)).unwrap();
    let rebuilt = scenarios_from_fixtures(Path::new(FIXTURES_DIR), &existing).unwrap();

    if std::env::var_os("DEVSTACK_WRITE_SCENARIOS").is_some() {
        std::fs::write(SCENARIO_FILE, rebuilt.to_pretty_json()).unwrap();
        return;
    }

    let hint = "run DEVSTACK_WRITE_SCENARIOS=1 cargo test -p bridge-devstack --test scenarios to rebuild it";
    assert_eq!(
        rebuilt, existing,
        "scenarios/invoices.json differs from the fixtures; {hint}"
    );
    assert_eq!(
        rebuilt.to_pretty_json(),
        BUILTIN_SCENARIOS,
        "scenarios/invoices.json is not in canonical form; {hint}"
    );
}

#[test]
fn every_fixture_has_a_scenario() {
    let scenarios = Scenarios::builtin();

    for name in std::fs::read_dir(FIXTURES_DIR).unwrap() {
        let name = name.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".pdf") || name.ends_with(".txt") {
            assert!(scenarios.find(&name).is_some(), "no scenario for {name}");
        }
    }
    assert_eq!(scenarios.len(), 10);
}

#[test]
fn fapiao_is_in_cny() {
    let scenarios = Scenarios::builtin();
    let fapiao = scenarios.find("fapiao-shenzhen-2024.txt").unwrap();

    assert_eq!(fapiao.currency.as_deref(), Some("CNY"));
    assert_eq!(fapiao.vendor.as_deref(), Some("深圳市南岭云计算科技有限公司"));
    assert_eq!(amount(&fapiao.total_amount), Some("16430.00"));
    assert_eq!(amount(&fapiao.subtotal), Some("15500.00"));
    assert_eq!(amount(&fapiao.tax), Some("930.00"));
    assert_eq!(fapiao.line_items.len(), 2);
    assert_eq!(amount(&fapiao.line_items[0].quantity), Some("3"));
    assert_eq!(amount(&fapiao.line_items[0].amount), Some("13500.00"));
}

#[test]
fn one_scenario_has_low_confidence() {
    let scenarios = Scenarios::builtin();

    let low: Vec<_> = scenarios
        .iter()
        .filter(|(_, scenario)| scenario.confidence_score.is_some_and(|score| score < 60))
        .collect();

    assert!(!low.is_empty(), "no scenario scores below 60");
    for (name, scenario) in low {
        let reasoning = scenario.confidence_reasoning.as_deref().unwrap_or_default();
        assert!(!reasoning.is_empty(), "{name} has a low score but no reasoning");
    }
}

#[test]
fn some_scenarios_lack_line_items() {
    let scenarios = Scenarios::builtin();

    assert!(scenarios.iter().any(|(_, scenario)| scenario.line_items.is_empty()));
}

#[test]
fn azure_amounts_keep_their_text() {
    let scenarios = Scenarios::builtin();
    let azure = scenarios.find("AzureInterior.pdf").unwrap();

    assert_eq!(amount(&azure.total_amount), Some("279.84"));
    assert_eq!(amount(&azure.subtotal), Some("262.9"));
    assert_eq!(amount(&azure.tax), Some("16.94"));
    assert_eq!(azure.due_date.as_deref(), Some("2023-04-04"));
    // Two section headers and one note are not line items.
    assert_eq!(azure.line_items.len(), 4);
    assert_eq!(amount(&azure.line_items[2].amount), Some("0.9"));
}
