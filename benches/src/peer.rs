//! iceoryx2, the best Rust peer, measured in the same run: its own crate
//! (`benches/iceoryx2-peer`, outside the workspace so that a machine where it does not
//! build still builds and runs this benchmark), built on first use with cargo and run
//! as a child process that prints the same JSON lines as this bench
//! (`"impl":"iceoryx2"`). If it does not build or run, the bench says why and goes on.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::ipc_bench::IpcResult;

/// The peer's manifest, next to this crate's.
fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("iceoryx2-peer/Cargo.toml")
}

/// Where its build goes: beside this workspace's target directory.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d).join("iceoryx2-peer"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/iceoryx2-peer"),
    }
}

/// Builds the peer (quietly; cargo does nothing when it is up to date).
fn build() -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "--locked",
            "--manifest-path",
        ])
        .arg(manifest())
        .arg("--target-dir")
        .arg(target_dir())
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(format!("build failed: {last}"));
    }
    Ok(target_dir().join("release/coroipc-iceoryx2-peer"))
}

/// The value of `"key":` in one of our JSON lines (flat, no strings with quotes).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &line[at..];
    let end = rest.find([',', '}'])?;
    Some(rest[..end].trim_matches('"'))
}

fn number(line: &str, key: &str) -> Option<f64> {
    field(line, key).and_then(|v| v.parse().ok())
}

/// One line of the peer's output as a result.
fn parse(line: &str) -> Option<IpcResult> {
    let op = match field(line, "op")? {
        "rtt" => "rtt",
        "stream" => "stream",
        _ => return None,
    };
    Some(IpcResult {
        op,
        imp: "iceoryx2",
        mode: "spin",
        size: field(line, "size")?.parse().ok()?,
        median_ns: number(line, "median_ns"),
        p99_ns: number(line, "p99_ns"),
        msgs_per_s: number(line, "msgs_per_s"),
        mb_per_s: number(line, "mb_per_s"),
    })
}

/// Runs the peer; on any failure, says so on stderr and returns nothing.
pub fn iceoryx2(quick: bool) -> Vec<IpcResult> {
    let run = || -> Result<Vec<IpcResult>, String> {
        let exe = build()?;
        let mut cmd = Command::new(exe);
        cmd.arg("run");
        if quick {
            cmd.arg("--quick");
        }
        let out = cmd.output().map_err(|e| format!("cannot start: {e}"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(format!("run failed: {}", err.trim()));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(parse)
            .collect())
    };
    match run() {
        Ok(rows) => rows,
        Err(why) => {
            eprintln!("iceoryx2 peer skipped: {why}");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_peers_lines() {
        let r = parse(r#"{"bench":"ipc","op":"rtt","impl":"iceoryx2","mode":"spin","size":64,"median_ns":1234.5,"p99_ns":2345.6,"msgs_per_s":810045.2,"mb_per_s":null}"#).unwrap();
        assert_eq!((r.op, r.size), ("rtt", 64));
        assert_eq!(r.median_ns, Some(1234.5));
        assert_eq!(r.mb_per_s, None);
        assert!(parse(r#"{"op":"other","size":1}"#).is_none());
    }
}
