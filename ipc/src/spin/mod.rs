//! How both sides poll shared memory before they sleep: the one place spinning is
//! decided and done.
//!
//! * [`mode`]: what a wait may spend ([`WaitMode`], the public policy).
//! * [`adaptive`]: the adaptive policy's memory of recent waits ([`Adaptive`]), and
//!   one call's wait ([`WaitState`]); the client's waits and the server's poll of
//!   each request ring both use it.
//! * [`budget`]: the one spin engine ([`Spin`]): a budget bounded by a deadline, the
//!   clock read rarely; with back-off and liveness looks for the client's waits, steady
//!   for the server.
//! * [`pass`]: the server's policy over it ([`PassSpin`]): a budget per wait and one
//!   for the whole pass over a connection.

pub(crate) mod adaptive;
pub(crate) mod budget;
pub(crate) mod mode;
pub(crate) mod pass;

pub(crate) use adaptive::{Adaptive, WaitState};
pub(crate) use budget::{Spin, SpinStep};
pub use mode::WaitMode;
pub(crate) use pass::{PassSpin, PassStep};
