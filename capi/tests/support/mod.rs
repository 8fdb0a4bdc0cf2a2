//! Test support: finding the C compiler and the built library, compiling the C
//! programs (with ASan/UBSan when the compiler has them), and driving processes.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod rust_peer;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How C programs are built and run in this test run.
pub struct Toolchain {
    pub cc: String,
    /// Sanitizer flags, when a probe compile and run with them worked.
    sanitize: Vec<&'static str>,
    /// Whether LeakSanitizer works here (it does not under ptrace, in some containers).
    pub leaks_checked: bool,
    lib: PathBuf,
    pub out: PathBuf,
    built: Mutex<HashMap<String, PathBuf>>,
}

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>`: where cargo put `libcoroipc.a` for this test run.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

fn run_quiet(cmd: &mut Command) -> Option<std::process::Output> {
    cmd.stdin(Stdio::null()).output().ok()
}

/// Builds `libcoroipc.{a,so}` with the profile of this test run. `cargo test` does not
/// build a package's staticlib/cdylib for its integration tests, so without this the C
/// programs would link whatever library an earlier `cargo build` left. (Cargo does not
/// hold the build directory's lock while tests run, so this nested build works.)
fn build_library() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let dir = profile_dir();
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--quiet", "-p", "coroipc-capi", "--lib"]);
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
        None => panic!("unexpected target directory {}", dir.display()),
    }
    let mut child = cmd
        .current_dir(manifest_dir())
        .stdin(Stdio::null())
        .spawn()
        .expect("running cargo build -p coroipc-capi");
    let deadline = Instant::now() + Duration::from_secs(900);
    let status = loop {
        if let Some(status) = child.try_wait().expect("cargo build") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`cargo build -p coroipc-capi` did not finish within 15 minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "`cargo build -p coroipc-capi` failed");
}

/// A library built by [`build_library`]: `target/<profile>/<file>`.
pub fn artifact(file: &str) -> PathBuf {
    let lib = profile_dir().join(file);
    assert!(
        lib.exists(),
        "{} is missing after `cargo build -p coroipc-capi`",
        lib.display()
    );
    lib
}

/// Compiles and runs `source` with `flags`; the run's output.
fn probe(cc: &str, dir: &Path, name: &str, source: &str, flags: &[&str]) -> Option<String> {
    let src = dir.join(format!("{name}.c"));
    let exe = dir.join(name);
    std::fs::write(&src, source).ok()?;
    let built = run_quiet(Command::new(cc).args(flags).arg(&src).arg("-o").arg(&exe))?;
    if !built.status.success() {
        return None;
    }
    let ran = run_quiet(Command::new(&exe).env("ASAN_OPTIONS", "detect_leaks=1"))?;
    Some(format!(
        "{}{}",
        ran.status.success(),
        String::from_utf8_lossy(&ran.stderr)
    ))
}

/// The toolchain, or `None` (with the reason printed) when there is no C compiler.
pub fn toolchain() -> Option<&'static Toolchain> {
    static TC: OnceLock<Option<Toolchain>> = OnceLock::new();
    TC.get_or_init(|| {
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
        if run_quiet(Command::new(&cc).arg("--version")).is_none_or(|o| !o.status.success()) {
            eprintln!("SKIPPED: no C compiler (`{cc}`); install one (gcc) to run the C API tests");
            return None;
        }
        build_library();
        let lib = artifact("libcoroipc.a");
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("capi-{}", std::process::id()));
        std::fs::create_dir_all(&out).expect("tmp dir");
        let flags = ["-fsanitize=address,undefined", "-g"];
        let sanitize = match probe(&cc, &out, "probe_asan", "int main(void) { return 0; }\n", &flags) {
            Some(r) if r.starts_with("true") => vec!["-fsanitize=address,undefined", "-fno-omit-frame-pointer"],
            _ => {
                eprintln!("NOTE: {cc} cannot build and run with -fsanitize=address,undefined: C programs run without sanitizers");
                Vec::new()
            }
        };
        let leak = "#include <stdlib.h>\nvoid * volatile p;\nint main(void) { p = malloc(33); p = 0; return 0; }\n";
        let leaks_checked = !sanitize.is_empty()
            && probe(&cc, &out, "probe_lsan", leak, &flags)
                .is_some_and(|r| r.contains("detected memory leaks"));
        if !sanitize.is_empty() && !leaks_checked {
            eprintln!("NOTE: LeakSanitizer does not work here (ptrace or container limits): leaks are not checked");
        }
        Some(Toolchain {
            cc,
            sanitize,
            leaks_checked,
            lib,
            out,
            built: Mutex::new(HashMap::new()),
        })
    })
    .as_ref()
}

impl Toolchain {
    /// Compiles `source` (relative to the crate) against the static library, once.
    pub fn build(&self, source: &str) -> PathBuf {
        self.build_with(source, &[])
    }

    /// As [`build`](Self::build), with `extra` compiler flags (the first build of
    /// `source` decides them).
    pub fn build_with(&self, source: &str, extra: &[&str]) -> PathBuf {
        let mut built = self
            .built
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(exe) = built.get(source) {
            return exe.clone();
        }
        let dir = manifest_dir();
        let stem = Path::new(source)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let exe = self.out.join(&stem);
        let output = Command::new(&self.cc)
            .args([
                "-std=c11",
                "-D_DEFAULT_SOURCE",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-g",
            ])
            .args(extra)
            .args(&self.sanitize)
            // As a program built against corosync's headers: <corosync/coroipcc.h>
            // from include/, <corosync/corotypes.h> and <corosync/hdb.h> from
            // include/base/ (corosync's own in a corosync tree).
            .arg("-I")
            .arg(dir.join("include"))
            .arg("-I")
            .arg(dir.join("include/base"))
            .arg("-I")
            .arg(dir.join("examples"))
            .arg(dir.join(source))
            .arg(&self.lib)
            .args([
                "-lpthread",
                "-ldl",
                "-lm",
                "-lrt",
                "-lutil",
                "-lgcc_s",
                "-lc",
            ])
            .arg("-o")
            .arg(&exe)
            .output()
            .expect("running the C compiler");
        assert!(
            output.status.success(),
            "compiling {source} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        built.insert(source.to_owned(), exe.clone());
        exe
    }

    /// A command for a built C program, with the sanitizers' options.
    pub fn command(&self, exe: &Path) -> Command {
        let mut cmd = Command::new(exe);
        cmd.env(
            "ASAN_OPTIONS",
            format!(
                "detect_leaks={}:exitcode=23:abort_on_error=0",
                u8::from(self.leaks_checked)
            ),
        )
        .env(
            "UBSAN_OPTIONS",
            "halt_on_error=1:print_stacktrace=1:exitcode=24",
        );
        cmd
    }
}

/// A fresh abstract socket name.
pub fn unique_name(what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "coroipc-capi-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A child process whose stdout lines are read as they come.
pub struct Proc {
    pub name: String,
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        let (tx, lines) = channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Proc {
            name: name.to_owned(),
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    fn report(&self) -> String {
        format!(
            "{} stdout so far: {:?}\nstderr:\n{}",
            self.name,
            self.seen,
            self.stderr.lock().unwrap()
        )
    }

    /// Waits for a stdout line equal to `want`.
    pub fn expect_line(&mut self, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line == want;
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!("no line {want:?} within {timeout:?}\n{}", self.report()),
            }
        }
    }

    /// How many stdout lines equal to `want` arrived so far (reading what is there).
    pub fn count_lines(&mut self, want: &str) -> usize {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.iter().filter(|l| *l == want).count()
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// Sends SIGTERM.
    pub fn terminate(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    }

    /// Waits for the exit (killing it after `timeout`).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the reader threads catch up with the last output.
                std::thread::sleep(Duration::from_millis(50));
                let _ = self.count_lines("");
                return status;
            }
            if Instant::now() > deadline {
                self.kill9();
                panic!(
                    "{} did not exit within {timeout:?}\n{}",
                    self.name,
                    self.report()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for a successful exit.
    pub fn wait_success(&mut self, timeout: Duration) {
        let status = self.wait(timeout);
        assert!(
            status.success(),
            "{} exited with {status}\n{}",
            self.name,
            self.report()
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
