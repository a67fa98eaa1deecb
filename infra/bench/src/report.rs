//! `target/bench/report.json` and the table `make bench` prints.

use anyhow::Result;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, Table};
use serde_json::json;

use crate::figures::{BenchDir, Figure, write_json};

/// Steps in report order, by the name of their figures file.
pub const STEPS: &[&str] = &[
    "cold-start",
    "size",
    "per-event",
    "webhook-latency",
    "stream-memory",
    "burst",
];

/// Deletes the figures of earlier runs, so a step that fails now leaves no stale figures.
pub fn clear(bench_dir: &BenchDir) {
    for step in STEPS {
        let _ = std::fs::remove_file(bench_dir.step_file(step));
    }
}

/// Merges the steps that ran into `report.json`, with the machine they ran on, and prints the table.
pub fn write(bench_dir: &BenchDir) -> Result<()> {
    let mut figures: Vec<Figure> = Vec::new();
    let mut missing = Vec::new();
    for step in STEPS {
        match bench_dir.read_step(step)? {
            Some(step_figures) => figures.extend(step_figures),
            None => missing.push(*step),
        }
    }
    let report = json!({
        "generated_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "machine": machine(),
        "missing_steps": missing,
        "figures": figures,
    });
    write_json(&bench_dir.report_file(), &report)?;

    println!("{}", table(&figures));
    if !missing.is_empty() {
        println!("not measured in this run: {}", missing.join(", "));
    }
    let missed: Vec<&str> = figures
        .iter()
        .filter(|figure| figure.meets_target() == Some(false))
        .map(|figure| figure.name.as_str())
        .collect();
    if !missed.is_empty() {
        println!("targets missed: {}", missed.join(", "));
    }
    println!("report: {}", bench_dir.report_file().display());
    Ok(())
}

fn table(figures: &[Figure]) -> Table {
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    table.set_header(["figure", "value", "unit", "median", "p99", "runs", "target", "met"]);
    for figure in figures {
        let optional = |value: Option<f64>| value.map(format_number).unwrap_or_default();
        let met = match figure.meets_target() {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
        table.add_row([
            figure.name.clone(),
            format_number(figure.value),
            figure.unit.clone(),
            optional(figure.median),
            optional(figure.p99),
            figure.runs.map(|runs| runs.to_string()).unwrap_or_default(),
            figure
                .target_max
                .map(|target| format!("≤ {}", format_number(target)))
                .unwrap_or_default(),
            met.to_owned(),
        ]);
    }
    for column in 1..=6 {
        if let Some(column) = table.column_mut(column) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}

/// Three significant digits for small values, whole numbers for large ones.
fn format_number(value: f64) -> String {
    if value.abs() >= 100.0 || value == value.trunc() {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// CPU model, core count and memory from /proc, and the kernel release.
fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find_map(|line| {
        line.strip_prefix("model name")?
            .split_once(':')
            .map(|(_, name)| name.trim().to_owned())
    });
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: Option<u64> = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_owned())
        .ok();
    json!({
        "cpu_model": model,
        "available_parallelism": std::thread::available_parallelism().map(|cores| cores.get()).ok(),
        "memory_gib": memory_kib.map(|kib| (kib as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0),
        "kernel": kernel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_rounded_for_the_table() {
        assert_eq!(format_number(1234.56), "1235");
        assert_eq!(format_number(12.345), "12.3");
        assert_eq!(format_number(1.2345), "1.23");
        assert_eq!(format_number(8.0), "8");
    }

    #[test]
    fn missed_targets_are_marked() {
        let figures = vec![
            Figure::new("a", "ms", 25.0).with_target(20.0),
            Figure::new("b", "ms", 5.0).with_target(20.0),
        ];

        let text = table(&figures).to_string();

        assert!(text.contains("NO"), "{text}");
        assert!(text.contains("yes"), "{text}");
    }
}
