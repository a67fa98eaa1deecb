//! Binary size: each function's `bootstrap` as built, and zipped the way
//! `sam deploy` packages it (the SAM CLI's own `make_zip`, run with the
//! Python of `.venv/sam`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::figures::{Figure, mebibytes};
use crate::functions::Function;

/// The zipped-size target per function, in MiB.
pub const TARGET_MIB: f64 = 8.0;

/// Zips `<directory>/*` into `<base>.zip` with the SAM CLI's packaging code.
const MAKE_ZIP: &str =
    "import sys\nfrom samcli.lib.package.utils import make_zip\nprint(make_zip(sys.argv[1], sys.argv[2]))\n";

/// Settings of [`measure`].
#[derive(Debug, Clone)]
pub struct SizeOptions {
    pub lambda_dir: PathBuf,
    pub functions: Vec<&'static Function>,
    /// The SAM CLI's Python (`.venv/sam/bin/python`).
    pub sam_python: PathBuf,
    /// Directory for the zip files.
    pub work_dir: PathBuf,
}

pub fn measure(options: &SizeOptions) -> Result<Vec<Figure>> {
    if !options.sam_python.exists() {
        bail!(
            "{} is missing: run `make venv` (it installs the SAM CLI, whose zip code measures the package)",
            options.sam_python.display()
        );
    }
    std::fs::create_dir_all(&options.work_dir)
        .with_context(|| format!("cannot create {}", options.work_dir.display()))?;

    let mut figures = Vec::new();
    for function in &options.functions {
        let directory = options.lambda_dir.join(function.binary);
        let binary = directory.join("bootstrap");
        let binary_bytes = file_size(&binary).with_context(|| {
            format!(
                "build it with `cargo lambda build --release --bin {}` first",
                function.binary
            )
        })?;
        let zip = sam_zip(&options.sam_python, &directory, &options.work_dir.join(function.binary))?;
        let zip_bytes = file_size(&zip)?;
        println!(
            "binary size {:<17} bootstrap {:>6.2} MiB  zipped {:>6.2} MiB",
            function.name,
            mebibytes(binary_bytes),
            mebibytes(zip_bytes)
        );
        figures.push(
            Figure::new(format!("zip_size.{}", function.name), "MiB", mebibytes(zip_bytes))
                .with_target(TARGET_MIB)
                .with_detail(format!(
                    "{} bootstrap zipped by the SAM CLI's make_zip",
                    function.binary
                )),
        );
        figures.push(
            Figure::new(format!("binary_size.{}", function.name), "MiB", mebibytes(binary_bytes))
                .with_detail("bootstrap as built by cargo lambda build --release (stripped)"),
        );
    }
    Ok(figures)
}

fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len())
}

/// Returns the zip the SAM CLI makes of `directory`, written as `<base>.zip`.
fn sam_zip(python: &Path, directory: &Path, base: &Path) -> Result<PathBuf> {
    let output = Command::new(python)
        .args(["-c", MAKE_ZIP])
        .arg(base)
        .arg(directory)
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !output.status.success() {
        bail!(
            "the SAM CLI's make_zip failed on {}: {}",
            directory.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}
