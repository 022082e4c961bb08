//! The modern ClickHouse engine (26.x), which runs here only in-process: chdb, driven through
//! Python.

use std::process::Command;

/// Runs the Python `script` with `args` (in `sys.argv[1:]`) in a fresh process where `chdb`
/// is importable, and returns what it wrote to stdout. Panics with an install hint when Python
/// or chdb is missing, and with the script's stderr when it fails.
pub fn chdb(script: &str, args: &[&str]) -> Vec<u8> {
    let probe = Command::new("python3")
        .args(["-c", "import chdb"])
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed for the modern engine: {e}"));
    assert!(
        probe.status.success(),
        "the modern engine needs chdb: pip install chdb-core ({})",
        String::from_utf8_lossy(&probe.stderr).trim()
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    assert!(
        out.status.success(),
        "the chdb script failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
