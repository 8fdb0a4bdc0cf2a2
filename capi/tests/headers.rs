//! The hand-written headers are the contract (`include/corosync/{coroipcc,coroipcs,
//! coroipc_types}.h`, corosync 1.4.10's API; `include/base/corosync/{corotypes,hdb}.h`):
//! this test checks them against corosync's types and against the library.
//!
//! * `tests/c/signatures.c`, compiled with `-Werror -Wincompatible-pointer-types`,
//!   assigns every function of coroipcc.h and coroipcs.h to a function pointer of
//!   corosync's exact type and checks every field of `struct coroipcs_init_state(_v2)`;
//!   it prints the layout of the headers' types, which must be the layout of the Rust
//!   `#[repr(C)]` definitions the library is built from, and the `cs_error_t` values,
//!   which must be the Rust enum's.
//! * Every function the headers declare is exported by `libcoroipc.a` and
//!   `libcoroipc.so`, and every `coroipcc_*` / `coroipcs_*` symbol they export is
//!   declared.
//! * Each header compiles on its own, as C99, C11 and C++ (`-pedantic -Werror`).
//!
//! The Rust types are not reachable from an integration test (the crate builds only a
//! `cdylib` and a `staticlib`, no rlib), so the test compiles the library's own source
//! files for them (`src/types.rs`, `src/server/callbacks.rs`, which use nothing else
//! of the crate). Without a C compiler it prints SKIPPED and passes.

mod support;

#[allow(dead_code, unreachable_pub, clippy::all)]
#[path = "../src/types.rs"]
mod types;

#[allow(dead_code, unreachable_pub, clippy::all)]
#[path = "../src/server/callbacks.rs"]
mod callbacks;

use std::collections::{BTreeMap, BTreeSet};
use std::mem::{align_of, offset_of, size_of};
use std::path::Path;
use std::process::{Command, Stdio};

use callbacks::{coroipcs_init_state, coroipcs_init_state_v2};
use types::{coroipc_request_header_t, coroipc_response_header_t, cs_error_t, hdb_handle_t};

/// The installed headers, as a program includes them.
const HEADERS: &[&str] = &[
    "corosync/coroipcc.h",
    "corosync/coroipcs.h",
    "corosync/coroipc_types.h",
    "corosync/corotypes.h",
    "corosync/hdb.h",
];

/// `sizeof` / `alignof` / `offsetof` lines of the Rust type `$t` (named as in C).
macro_rules! layout {
    ($m:ident, $t:ident { $($f:ident),* $(,)? }) => {
        $m.insert(format!("sizeof {}", stringify!($t)), size_of::<$t>());
        $m.insert(format!("alignof {}", stringify!($t)), align_of::<$t>());
        $(
            $m.insert(
                format!("offsetof {}.{}", stringify!($t), stringify!($f)),
                offset_of!($t, $f),
            );
        )*
    };
}

/// The layout of the Rust definitions, keyed as `signatures.c` prints them.
fn rust_layout() -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    layout!(m, coroipc_request_header_t { size, id });
    layout!(m, coroipc_response_header_t { size, id, error });
    layout!(m, cs_error_t {});
    layout!(m, hdb_handle_t {});
    layout!(
        m,
        coroipcs_init_state {
            socket_name,
            sched_policy,
            sched_param,
            malloc,
            free,
            log_printf,
            service_available,
            private_data_size_get,
            security_valid,
            serialize_lock,
            serialize_unlock,
            sending_allowed,
            sending_allowed_release,
            poll_accept_add,
            poll_dispatch_add,
            poll_dispatch_modify,
            poll_dispatch_destroy,
            fatal_error,
            init_fn_get,
            exit_fn_get,
            handler_fn_get,
        }
    );
    layout!(
        m,
        coroipcs_init_state_v2 {
            socket_name,
            sched_policy,
            sched_param,
            malloc,
            free,
            old_log_printf,
            service_available,
            private_data_size_get,
            security_valid,
            serialize_lock,
            serialize_unlock,
            sending_allowed,
            sending_allowed_release,
            poll_accept_add,
            poll_dispatch_add,
            poll_dispatch_modify,
            poll_dispatch_destroy,
            fatal_error,
            init_fn_get,
            exit_fn_get,
            handler_fn_get,
            stats_create_connection,
            stats_destroy_connection,
            stats_update_value,
            stats_increment_value,
            log_printf,
            log_subsys_id,
            stats_decrement_value,
        }
    );
    m
}

/// The Rust `cs_error_t` values by name (every variant).
fn rust_values() -> BTreeMap<&'static str, i32> {
    macro_rules! values {
        ($($v:ident),* $(,)?) => {
            BTreeMap::from([$((stringify!($v), cs_error_t::$v as i32)),*])
        };
    }
    values!(
        CS_OK,
        CS_ERR_LIBRARY,
        CS_ERR_VERSION,
        CS_ERR_INIT,
        CS_ERR_TIMEOUT,
        CS_ERR_TRY_AGAIN,
        CS_ERR_INVALID_PARAM,
        CS_ERR_NO_MEMORY,
        CS_ERR_BAD_HANDLE,
        CS_ERR_BUSY,
        CS_ERR_ACCESS,
        CS_ERR_NOT_EXIST,
        CS_ERR_EXIST,
        CS_ERR_NO_SPACE,
        CS_ERR_INTERRUPT,
        CS_ERR_NAME_NOT_FOUND,
        CS_ERR_NO_RESOURCES,
        CS_ERR_NOT_SUPPORTED,
        CS_ERR_BAD_OPERATION,
        CS_ERR_FAILED_OPERATION,
        CS_ERR_MESSAGE_ERROR,
        CS_ERR_QUEUE_FULL,
        CS_ERR_QUEUE_NOT_AVAILABLE,
        CS_ERR_BAD_FLAGS,
        CS_ERR_TOO_BIG,
        CS_ERR_NO_SECTIONS,
        CS_ERR_CONTEXT_NOT_FOUND,
        CS_ERR_TOO_MANY_GROUPS,
        CS_ERR_IN_SHUTDOWN,
        CS_ERR_SECURITY,
    )
}

/// `COROIPCS_SERVICE_MAX` as the library defines it (`src/server/mod.rs`; the module
/// cannot be compiled on its own).
fn rust_service_max() -> i32 {
    let src = std::fs::read_to_string(support::manifest_dir().join("src/server/mod.rs"))
        .expect("src/server/mod.rs");
    let prefix = "pub const COROIPCS_SERVICE_MAX: u16 = ";
    let line = src
        .lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .expect("COROIPCS_SERVICE_MAX in src/server/mod.rs");
    line.trim_end_matches(';').parse().expect("a number")
}

/// `text` without its C comments.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, after)| after);
            out.push(' ');
        } else if let Some(r) = rest.strip_prefix("//") {
            rest = r.split_once('\n').map_or("", |(_, after)| after);
            out.push('\n');
        } else {
            let c = rest.chars().next().expect("not empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The functions a header declares: the name before the `(` of each `extern`
/// declaration (`extern "C"` blocks skipped).
fn declared_functions(header: &str) -> Vec<String> {
    let text = strip_comments(header);
    let mut names = Vec::new();
    for (i, _) in text.match_indices("extern") {
        let decl = &text[i + "extern".len()..];
        if decl.trim_start().starts_with('"') {
            continue;
        }
        let decl = decl.split(';').next().unwrap_or("");
        let Some(paren) = decl.find('(') else {
            continue;
        };
        let name: String = decl[..paren]
            .trim_end()
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        assert!(!name.is_empty(), "no function name in `extern{decl}`");
        names.push(name);
    }
    names
}

/// Every function of coroipcc.h and coroipcs.h.
fn header_functions() -> BTreeSet<String> {
    let dir = support::manifest_dir().join("include/corosync");
    let mut all = BTreeSet::new();
    for h in ["coroipcc.h", "coroipcs.h"] {
        let text = std::fs::read_to_string(dir.join(h)).expect("header");
        let names = declared_functions(&text);
        assert!(names.len() > 10, "{h}: only {names:?} found");
        for n in names {
            assert!(all.insert(n.clone()), "{n} declared twice");
        }
    }
    all
}

#[test]
fn the_header_parser_finds_declarations() {
    let text = "#ifdef __cplusplus\nextern \"C\" {\n#endif\n/* extern int no(void); */\n\
                extern cs_error_t\nfoo_bar (\n\tint a);\nextern void *baz(void);\n\
                typedef int (*t)(void);\n";
    assert_eq!(declared_functions(text), ["foo_bar", "baz"]);
    assert_eq!(header_functions().len(), 25, "{:?}", header_functions());
}

#[test]
fn headers_have_corosyncs_types_and_the_librarys_layout() {
    let Some(tc) = support::toolchain() else {
        return;
    };
    let exe = tc.build_with("tests/c/signatures.c", &["-Wincompatible-pointer-types"]);
    let out = tc.command(&exe).output().expect("running signatures");
    assert!(
        out.status.success(),
        "signatures: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    let mut functions = BTreeSet::new();
    let mut c_layout = BTreeMap::new();
    let mut c_values = BTreeMap::new();
    for line in stdout.lines() {
        let (key, value) = line.rsplit_once(' ').expect("`key value` lines");
        match key.split_once(' ') {
            None if key == "function" => {
                assert!(functions.insert(value.to_owned()), "{value} twice");
            }
            Some(("value", name)) => {
                c_values.insert(name.to_owned(), value.parse::<i32>().expect("a value"));
            }
            _ => {
                c_layout.insert(key.to_owned(), value.parse::<usize>().expect("a number"));
            }
        }
    }

    // signatures.c checks every function the headers declare, no other.
    assert_eq!(
        functions,
        header_functions(),
        "functions checked vs declared"
    );

    // The C layout is the Rust layout, key for key.
    let rust = rust_layout();
    let differ: Vec<_> = c_layout
        .keys()
        .chain(rust.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| c_layout.get(*k) != rust.get(*k))
        .map(|k| format!("{k}: C {:?}, Rust {:?}", c_layout.get(k), rust.get(k)))
        .collect();
    assert!(
        differ.is_empty(),
        "the headers and the Rust definitions disagree:\n{}",
        differ.join("\n")
    );
    // corosync 1.4's sizes.
    assert_eq!(c_layout["sizeof coroipc_request_header_t"], 16);
    assert_eq!(c_layout["sizeof coroipc_response_header_t"], 24);
    assert_eq!(c_layout["offsetof coroipc_response_header_t.error"], 16);

    // cs_error_t: every Rust value is the header's; the header may have more (codes
    // libcoroipc never returns).
    assert_eq!(
        c_values.remove("COROIPCS_SERVICE_MAX"),
        Some(rust_service_max()),
        "COROIPCS_SERVICE_MAX"
    );
    for (name, value) in rust_values() {
        assert_eq!(c_values.get(name), Some(&value), "{name}");
    }
    let only_c: Vec<_> = c_values
        .keys()
        .filter(|k| !rust_values().contains_key(k.as_str()))
        .collect();
    if !only_c.is_empty() {
        eprintln!("NOTE: cs_error_t values the Rust enum does not have: {only_c:?}");
    }
}

/// The `coroipcc_*` / `coroipcs_*` functions `lib` defines, by `nm` (`-D` for a shared
/// library); `None` without `nm`.
fn exported(lib: &Path, dynamic: bool) -> Option<BTreeSet<String>> {
    let mut cmd = Command::new("nm");
    cmd.args(["-g", "--defined-only"]);
    if dynamic {
        cmd.arg("-D");
    }
    let out = cmd.arg(lib).stdin(Stdio::null()).output().ok()?;
    assert!(
        out.status.success(),
        "nm {}: {}",
        lib.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter_map(|l| {
                let mut cols = l.split_whitespace().rev();
                let name = cols.next()?;
                let kind = cols.next()?;
                (kind == "T" && (name.starts_with("coroipcc_") || name.starts_with("coroipcs_")))
                    .then(|| name.to_owned())
            })
            .collect(),
    )
}

#[test]
fn the_library_exports_every_declared_function() {
    if support::toolchain().is_none() {
        return; // it builds the library
    }
    let declared = header_functions();
    for (file, dynamic) in [("libcoroipc.a", false), ("libcoroipc.so", true)] {
        let lib = support::artifact(file);
        let Some(defined) = exported(&lib, dynamic) else {
            eprintln!("SKIPPED: no `nm` to list the symbols of {file}");
            return;
        };
        let missing: Vec<_> = declared.difference(&defined).collect();
        assert!(missing.is_empty(), "{file} does not export {missing:?}");
        let undeclared: Vec<_> = defined.difference(&declared).collect();
        assert!(
            undeclared.is_empty(),
            "{file} exports {undeclared:?}, which no header declares"
        );
    }
}

/// Compiles `#include <header>` alone with `compiler` and `flags`; the error output.
fn compile_alone(compiler: &str, flags: &[&str], header: &str) -> Result<(), String> {
    let dir = support::manifest_dir();
    let mut child = Command::new(compiler)
        .args(flags)
        .args([
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-fsyntax-only",
            "-I",
        ])
        .arg(dir.join("include"))
        .arg("-I")
        .arg(dir.join("include/base"))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{compiler}: {e}"))?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "#include <{header}>").expect("writing the source");
    }
    let out = child.wait_with_output().expect("compiler");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn each_header_compiles_on_its_own_as_c_and_cpp() {
    let Some(tc) = support::toolchain() else {
        return;
    };
    for h in HEADERS {
        for std in ["-std=c99", "-std=c11"] {
            if let Err(e) = compile_alone(&tc.cc, &[std, "-x", "c"], h) {
                panic!("<{h}> as {std}:\n{e}");
            }
        }
    }
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".to_owned());
    let has_cxx = Command::new(&cxx)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_cxx {
        eprintln!("NOTE: no C++ compiler (`{cxx}`): the headers are not compiled as C++");
        return;
    }
    for h in HEADERS {
        if let Err(e) = compile_alone(&cxx, &["-std=c++11", "-x", "c++"], h) {
            panic!("<{h}> as C++:\n{e}");
        }
    }
}
