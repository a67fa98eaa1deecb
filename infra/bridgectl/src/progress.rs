//! Progress of long operations on stderr: a spinner on a terminal, plain
//! lines otherwise (in tests and CI logs).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Reports the steps of a long operation and how long each took.
#[derive(Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
    current: Arc<Mutex<Option<(String, Instant)>>>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("spinner", &self.bar.is_some())
            .finish()
    }
}

impl Progress {
    /// Creates a spinner when stderr is a terminal, else plain lines.
    pub fn for_terminal() -> Progress {
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return Progress::lines();
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress {
            bar: Some(bar),
            current: Arc::default(),
        }
    }

    /// Creates a reporter that prints one line on stderr per finished step.
    pub fn lines() -> Progress {
        Progress {
            bar: None,
            current: Arc::default(),
        }
    }

    /// Ends the current step, printing its duration, and starts the next.
    pub fn step(&self, message: impl Into<String>) {
        let message = message.into();
        self.finish_current();
        if let Some(bar) = &self.bar {
            bar.reset_elapsed();
            bar.set_message(message.clone());
        }
        if let Ok(mut current) = self.current.lock() {
            *current = Some((message, Instant::now()));
        }
    }

    /// Prints a line without ending the current step.
    pub fn note(&self, message: impl AsRef<str>) {
        match &self.bar {
            Some(bar) => bar.println(format!("  {}", message.as_ref())),
            None => eprintln!("  {}", message.as_ref()),
        }
    }

    /// Ends the current step and removes the spinner.
    pub fn finish(&self) {
        self.finish_current();
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// Marks the current step as failed and removes the spinner.
    pub fn fail(&self) {
        self.end_current('✗');
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn finish_current(&self) {
        self.end_current('✓');
    }

    fn end_current(&self, mark: char) {
        let finished = self.current.lock().ok().and_then(|mut current| current.take());
        if let Some((message, started)) = finished {
            let line = format!("{mark} {message} ({:.1} s)", started.elapsed().as_secs_f64());
            match &self.bar {
                Some(bar) => bar.println(line),
                None => eprintln!("{line}"),
            }
        }
    }
}
