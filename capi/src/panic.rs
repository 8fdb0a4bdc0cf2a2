//! The boundary: no panic crosses into C. Every extern function runs its body through
//! [`boundary`] (status results) or [`boundary_or`] (other results), which catch a
//! panic and report it as `CS_ERR_LIBRARY` (or the given fallback value).

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::CapiError;
use crate::types::cs_error_t;

/// Runs `body`; its error, or a caught panic, becomes the `cs_error_t` returned.
pub(crate) fn boundary(body: impl FnOnce() -> Result<(), CapiError>) -> cs_error_t {
    // AssertUnwindSafe: after a panic the state touched by `body` is either behind a
    // mutex (recovered from poisoning and still consistent at the library's level: a
    // handle table or the server) or dropped; the caller only sees the code.
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => cs_error_t::CS_OK,
        Ok(Err(e)) => e.code(),
        Err(payload) => CapiError::Panic(describe(payload.as_ref())).code(),
    }
}

/// Runs `body` for a function that returns a value rather than a status: a caught
/// panic returns `fallback`.
pub(crate) fn boundary_or<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    // AssertUnwindSafe: as in `boundary`.
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// Writes one line to standard error, ignoring a failure: `eprintln!` panics when the
/// write fails (a closed pipe, with `SIGPIPE` ignored as corosync does), and outside a
/// boundary that panic would abort the daemon (C API audit of 2026-12-06).
pub(crate) fn to_stderr(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The message of a panic payload.
pub(crate) fn describe(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_library_error() {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let code = boundary(|| panic!("boom"));
        let value = boundary_or(7, || -> i32 { panic!("boom") });
        std::panic::set_hook(hook);
        assert_eq!(code, cs_error_t::CS_ERR_LIBRARY);
        assert_eq!(value, 7);
        assert_eq!(boundary(|| Ok(())), cs_error_t::CS_OK);
        assert_eq!(
            boundary(|| Err(CapiError::BadHandle)),
            cs_error_t::CS_ERR_BAD_HANDLE
        );
    }
}
