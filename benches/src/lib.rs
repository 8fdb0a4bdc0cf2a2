//! `coroipc-bench`: the measurements behind the `coroipc-bench` binary and the criterion
//! benches: the cross-process IPC comparison with a Unix-socket baseline
//! ([`ipc_bench`]), the ring against rtrb and crossbeam ([`ring_bench`]), and the cost
//! of idle connections ([`scale`]).

pub mod floor;
pub mod ipc_bench;
pub mod peer;
pub mod phases;
pub mod ring_bench;
pub mod scale;
pub mod stats;

/// CPUs online (not `available_parallelism`, which honours an inherited affinity mask
/// and would make a child pinned by inheritance think there is only one).
pub fn online_cpus() -> usize {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN) {
        Ok(Some(n)) if n > 0 => n as usize,
        _ => 1,
    }
}

/// Pins the calling thread (and what it spawns afterwards) to `cpu`, when there are
/// at least two CPUs.
pub fn pin_to(cpu: usize) {
    let n = online_cpus();
    if n < 2 {
        return;
    }
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu % n).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}
