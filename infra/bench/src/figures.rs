//! One measured figure, the files each benchmark step writes, and the report
//! that merges them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One figure of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub name: String,
    pub unit: String,
    /// The headline value: the median for timings, the peak for memory.
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
    /// Samples behind `median` and `p99`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<usize>,
    /// The largest acceptable `value`, when the figure has a target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_max: Option<f64>,
    /// Short description of the measurement and its method.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Figure {
    pub fn new(name: impl Into<String>, unit: &str, value: f64) -> Figure {
        Figure {
            name: name.into(),
            unit: unit.to_owned(),
            value,
            median: None,
            p99: None,
            runs: None,
            target_max: None,
            detail: String::new(),
        }
    }

    /// Builds a timing figure: `value` and `median` are the median of `samples`, which are in `unit`.
    pub fn timing(name: impl Into<String>, unit: &str, samples: &[f64]) -> Figure {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let median = percentile(&sorted, 0.5);
        Figure {
            median: Some(median),
            p99: Some(percentile(&sorted, 0.99)),
            runs: Some(sorted.len()),
            ..Figure::new(name, unit, median)
        }
    }

    pub fn with_target(mut self, target_max: f64) -> Figure {
        self.target_max = Some(target_max);
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Figure {
        self.detail = detail.into();
        self
    }

    /// Returns whether the value is within the target, or `None` without a target.
    pub fn meets_target(&self) -> Option<bool> {
        self.target_max.map(|target| self.value <= target)
    }
}

/// Returns the nearest-rank percentile of sorted samples, or 0 for none.
pub fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

pub fn mebibytes(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// `target/bench` and the files in it.
#[derive(Debug, Clone)]
pub struct BenchDir {
    pub dir: PathBuf,
}

impl BenchDir {
    pub fn new(repo_root: &Path) -> BenchDir {
        BenchDir {
            dir: repo_root.join("target").join("bench"),
        }
    }

    /// Returns the path of one step's figures file, such as `cold-start.figures.json`.
    pub fn step_file(&self, step: &str) -> PathBuf {
        self.dir.join(format!("{step}.figures.json"))
    }

    pub fn report_file(&self) -> PathBuf {
        self.dir.join("report.json")
    }

    pub fn write_step(&self, step: &str, figures: &[Figure]) -> Result<()> {
        write_json(&self.step_file(step), &figures)
    }

    /// Reads the figures of one step, or returns `None` when the step has not run.
    pub fn read_step(&self, step: &str) -> Result<Option<Vec<Figure>>> {
        let path = self.step_file(step);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let figures =
            serde_json::from_str(&text).with_context(|| format!("{} is not a figures file", path.display()))?;
        Ok(Some(figures))
    }
}

pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let text = serde_json::to_string_pretty(value).context("cannot encode JSON")?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_nearest_rank() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();

        assert_eq!(percentile(&sorted, 0.5), 51.0);
        assert_eq!(percentile(&sorted, 0.99), 99.0);
        assert_eq!(percentile(&sorted, 1.0), 100.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn timing_takes_the_median_as_value() {
        let figure = Figure::timing("t", "ms", &[5.0, 1.0, 3.0]).with_target(2.0);

        assert_eq!(figure.value, 3.0);
        assert_eq!(figure.median, Some(3.0));
        assert_eq!(figure.runs, Some(3));
        assert_eq!(figure.meets_target(), Some(false));
    }
}
