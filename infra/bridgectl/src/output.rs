//! Output of every subcommand: a readable table by default, JSON with `--json`.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

/// How results are printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    /// One JSON document, for scripts.
    Json,
}

/// Builds a table that wraps to the terminal's width.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> Table {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(headers.iter().copied());
    // Without a terminal there is no width to wrap to, so long cells would
    // make lines of any length.
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        table.set_width(120);
    }
    for row in rows {
        table.add_row(row);
    }
    table
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        // Only a map with non-string keys fails here, which no output type has.
        Err(error) => eprintln!("cannot encode the output as JSON: {error}"),
    }
}
