//! `libcoroipc`: the seed's C API (corosync 1.x `coroipcs.h` / `coroipcc.h`) over the
//! Rust `coroipc` crate.
//!
//! * [`server`]: `coroipcs_*`, a server whose services, selector, security and poll
//!   loop are the C daemon's callbacks (`struct coroipcs_init_state`).
//! * [`client`]: `coroipcc_*`, connect, requests (copy and zero copy), dispatch.
//! * [`types`]: `cs_error_t`, `hdb_handle_t`, the seed's message headers.
//!
//! Boundary rules: no panic crosses into C (module `panic`); NULL or invalid arguments get
//! `CS_ERR_INVALID_PARAM`; objects C holds are handles into tables (module `handle`), so a
//! stale, freed or foreign one gets `CS_ERR_BAD_HANDLE`, never a crash; every error has
//! one code (module `error`). The headers in `include/` are generated from these sources by
//! cbindgen (`COROIPC_BLESS=1 cargo test -p coroipc-capi --test headers`).
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

#[cfg(not(target_pointer_width = "64"))]
compile_error!("libcoroipc encodes 64-bit handles in `void *conn`: 64-bit targets only");

pub mod client;
mod error;
mod handle;
mod message;
mod panic;
pub mod server;
pub mod types;
