//! Benchmark 4's sizes: the x86_64 binary (and whether it is stripped), its deployment zip,
//! and the arm64 zip of `cargo lambda build` when one was built.
//!
//! I/O: reads file sizes, runs `file`, `rustup` and `python3` (to zip), writes `size.json`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};
use serde_json::json;

use crate::machine::{command_output, machine, write_json};

/// The size of `file` zipped as `bootstrap` with deflate level 9, as Lambda takes it; the zip
/// is written to `dir` and removed.
fn zip_size(file: &Path, dir: &Path) -> anyhow::Result<u64> {
    let zip = dir.join("bootstrap.zip");
    let script = "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED, compresslevel=9) as z:\n    z.write(sys.argv[1], 'bootstrap')\n";
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(file)
        .arg(&zip)
        .status()
        .context("python3")?;
    if !status.success() {
        bail!("zipping failed");
    }
    let size = std::fs::metadata(&zip)
        .with_context(|| zip.display().to_string())?
        .len();
    let _ = std::fs::remove_file(&zip);
    Ok(size)
}

/// Measures `bin` (and `arm64_zip`, when it exists) and writes the results to `out`.
///
/// # Errors
/// When `bin` cannot be read or zipped, or the results cannot be written.
pub fn run(bin: &Path, out: &Path, arm64_zip: Option<&Path>) -> anyhow::Result<()> {
    let dir = out.parent().unwrap_or(Path::new(".")).to_path_buf();
    std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
    let bytes = std::fs::metadata(bin)
        .with_context(|| bin.display().to_string())?
        .len();
    let stripped = command_output("file", &[&bin.display().to_string()])
        .map(|f| f.contains("stripped") && !f.contains("not stripped"))
        .unwrap_or(false);
    let zipped = zip_size(bin, &dir)?;
    let installed =
        command_output("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    let arm64 = match arm64_zip.filter(|p| p.exists()) {
        Some(p) => {
            json!({ "zip_bytes": std::fs::metadata(p).map(|m| m.len()).unwrap_or(0), "path": p.display().to_string() })
        }
        None if installed.contains("aarch64") => json!({
            "unavailable": "the aarch64 target is installed but `cargo lambda build --arm64` produced no zip (see the make output)"
        }),
        None => json!({
            "unavailable": format!(
                "no aarch64 Rust target installed (installed: {})",
                installed.lines().collect::<Vec<_>>().join(", ")
            )
        }),
    };
    write_json(
        out,
        &json!({
            "machine": machine(),
            "x86_64_bytes": bytes,
            "x86_64_stripped": stripped,
            "x86_64_zip_bytes": zipped,
            "arm64": arm64,
        }),
    )
}
