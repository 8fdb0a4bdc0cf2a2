//! Sealed `memfd` shared memory.
//!
//! A connection's rings live in an anonymous `memfd`: there is no file in `/dev/shm` to
//! leak after a crash, to guess, or to race on. Before the fd is shared, the creator
//! sizes it and seals it with `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`, so nobody,
//! the creator included, can change its size any more. The receiving side
//! ([`SharedMemory::from_fd_verified`]) checks those seals *before* it looks at the
//! size, and only then maps it: a hostile peer can write garbage into the memory, but
//! it cannot truncate the file under our mapping and make us fault with `SIGBUS`.
//!
//! The receiver also insists that the fd is an ordinary (tmpfs-backed) memfd: a
//! hugetlbfs memfd passes the seal check but allocates its pages at fault time, and a
//! fault with the huge page pool exhausted is a `SIGBUS` too.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use memmap2::{MmapOptions, MmapRaw};
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::sys::stat::fstat;
use nix::sys::statfs::{fstatfs, TMPFS_MAGIC};

use super::eintr::retry_eintr;

/// The seals that freeze a region's size (and the set of seals itself).
const REQUIRED_SEALS: SealFlag = SealFlag::F_SEAL_SHRINK
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_SEAL);

/// Why a shared-memory fd received from a peer was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShmError {
    /// A system call failed (including `mmap` of an fd that is not open read-write or
    /// is write-sealed).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The object's size is not the one announced.
    #[error("shared memory has {actual} bytes, {expected} expected")]
    WrongSize {
        /// The size the caller expected.
        expected: usize,
        /// The size of the object.
        actual: u64,
    },
    /// The object lacks one of `F_SEAL_SHRINK`, `F_SEAL_GROW`, `F_SEAL_SEAL`, so the
    /// peer could still resize it.
    #[error("shared memory is not sealed against resizing (seals {seals:#x})")]
    NotSealed {
        /// The seals the object carries (`F_GET_SEALS`).
        seals: i32,
    },
    /// The object cannot carry seals (`F_GET_SEALS` fails with `EINVAL`): it is no
    /// memfd nor any other shmem file (a socket, an eventfd, a file on disk or on a
    /// FUSE mount).
    #[error("shared memory is not a memfd: it cannot carry seals")]
    Unsealable,
    /// The object is not an ordinary tmpfs-backed memfd (for example a hugetlbfs
    /// memfd, whose page faults can raise `SIGBUS`).
    #[error("shared memory is not an ordinary memfd (file system type {fs_type:#x})")]
    NotMemfd {
        /// The file system magic number (`fstatfs`).
        fs_type: i64,
    },
}

/// A sealed memfd, mapped read-write and shared.
///
/// The mapping lives as long as this value; dropping it unmaps the memory. The memory
/// itself stays alive while any process still maps it or holds its fd, so neither side
/// keeps the fd once it is not needed: the creator hands it out with
/// [`take_fd`](Self::take_fd) (and closes it once sent), the receiver closes it right
/// after mapping. That saves one descriptor per connection on each side.
#[derive(Debug)]
pub struct SharedMemory {
    map: MmapRaw,
    /// The memfd: `Some` from [`create`](Self::create) until
    /// [`take_fd`](Self::take_fd); always `None` for a mapping adopted from a peer.
    fd: Option<OwnedFd>,
}

impl SharedMemory {
    /// Creates an anonymous memfd of `len` bytes (zero-filled), seals its size and
    /// maps it read-write, shared.
    ///
    /// `name` only shows up in `/proc/<pid>/fd` and `/proc/<pid>/maps` (as
    /// `/memfd:<name>`); it must not contain NUL and is limited to 249 bytes.
    /// `len` must not be 0.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero or too large `len` or a name with NUL; the OS error of
    /// `memfd_create`, `ftruncate`, `fcntl` or `mmap`.
    pub fn create(name: &str, len: usize) -> io::Result<SharedMemory> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "shared memory length must not be 0",
            ));
        }
        let size = i64::try_from(len).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "shared memory length too large",
            )
        })?;
        let cname = CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "memfd name contains NUL"))?;
        let fd = memfd_create(
            &cname,
            MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
        )
        .map_err(io::Error::from)?;
        retry_eintr(|| nix::unistd::ftruncate(&fd, size))?;
        retry_eintr(|| fcntl(fd.as_raw_fd(), FcntlArg::F_ADD_SEALS(REQUIRED_SEALS)))?;
        let map = MmapOptions::new().len(len).map_raw(&fd)?;
        Ok(SharedMemory { map, fd: Some(fd) })
    }

    /// Adopts a memfd received from a peer, after checking that it is an ordinary
    /// memfd, sealed against shrinking, growing and further sealing, and exactly
    /// `expected_len` bytes long; then maps it read-write, shared, and closes the fd
    /// (the mapping keeps the memory alive).
    ///
    /// The seals are checked before the size: once they hold, the size can no longer
    /// change, so the size seen is the size mapped. On error the fd is closed.
    ///
    /// # Errors
    ///
    /// [`ShmError`]: not a tmpfs memfd, missing seals, wrong size, or an OS error.
    pub fn from_fd_verified(fd: OwnedFd, expected_len: usize) -> Result<SharedMemory, ShmError> {
        // The seals first: `F_GET_SEALS` asks no file system anything, so a file whose
        // file system never answers (a peer's FUSE mount) is refused here at once,
        // where `fstatfs` would sleep until its daemon replied. Only shmem files
        // (tmpfs, hugetlbfs) carry seals, and their `fstatfs` is immediate.
        let seals = match retry_eintr(|| fcntl(fd.as_raw_fd(), FcntlArg::F_GET_SEALS)) {
            Ok(seals) => seals,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Err(ShmError::Unsealable),
            Err(e) => return Err(ShmError::Io(e)),
        };
        if !SealFlag::from_bits_truncate(seals).contains(REQUIRED_SEALS) {
            return Err(ShmError::NotSealed { seals });
        }
        let fs_type = retry_eintr(|| fstatfs(&fd))?.filesystem_type();
        if fs_type != TMPFS_MAGIC {
            // `__fsword_t` is `i64` on 64-bit targets and `i32` on 32-bit ones.
            #[allow(clippy::useless_conversion)]
            let fs_type = i64::from(fs_type.0);
            return Err(ShmError::NotMemfd { fs_type });
        }
        let stat = retry_eintr(|| fstat(fd.as_raw_fd()))?;
        // A negative size cannot happen; map it to a value that never matches.
        let actual = u64::try_from(stat.st_size).unwrap_or(u64::MAX);
        if expected_len == 0 || usize::try_from(actual).ok() != Some(expected_len) {
            return Err(ShmError::WrongSize {
                expected: expected_len,
                actual,
            });
        }
        let map = MmapOptions::new().len(expected_len).map_raw(&fd)?;
        Ok(SharedMemory { map, fd: None })
    }

    /// Base address of the mapping: page-aligned, valid for [`len`](Self::len) bytes
    /// of reads and writes while `self` lives.
    ///
    /// The peer may write to this memory at any time: treat everything read from it
    /// as untrusted, and access it only through raw pointers or atomics, never through
    /// `&`/`&mut` references to plain data.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Length of the mapping in bytes (never 0).
    #[cfg(any(test, feature = "raw-peer"))]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Always false: a region is never empty. (Present because `len` is.)
    #[cfg(any(test, feature = "raw-peer"))]
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The memfd, for passing to the peer (`None` once taken, or for a mapping
    /// adopted from a peer).
    #[cfg(any(test, feature = "raw-peer"))]
    pub fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.fd.as_ref().map(std::os::fd::AsFd::as_fd)
    }

    /// Takes the memfd out, to send and then close; the mapping stays.
    pub fn take_fd(&mut self) -> Option<OwnedFd> {
        self.fd.take()
    }

    /// Lets go of the memfd's pages while the address range stays reserved: the
    /// range is mapped again, in place (`MAP_FIXED`), inaccessible (`PROT_NONE`) and
    /// backed by nothing, so the memfd's memory is freed with the peer's last mapping
    /// (even in a process that locks its memory: an inaccessible mapping is never
    /// filled in), and the range cannot be handed to anything else while pointers
    /// into it may live on. For a region nothing may touch any more (see
    /// `crate::releasable`): an access after this faults.
    ///
    /// # Safety
    ///
    /// Nothing may access the memory through any pointer derived from
    /// [`as_ptr`](Self::as_ptr) after this call, on any thread, until `self` is
    /// dropped.
    ///
    /// # Errors
    ///
    /// The OS error of `mmap` (out of memory for the mapping's bookkeeping); the
    /// mapping is then unchanged.
    pub(crate) unsafe fn forget_pages(&self) -> io::Result<()> {
        use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};
        let (Some(addr), Some(len)) = (
            std::num::NonZeroUsize::new(self.map.as_mut_ptr() as usize),
            std::num::NonZeroUsize::new(self.map.len()),
        ) else {
            return Ok(());
        };
        let flags = MapFlags::MAP_FIXED | MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE;
        // SAFETY: the range is exactly this value's own mapping, so `MAP_FIXED`
        // replaces nothing else, and `MmapRaw`'s drop unmaps the same range later.
        // Nothing accesses the memory any more (caller contract); the range stays
        // reserved, so no other allocation can take it meanwhile.
        unsafe { mmap_anonymous(Some(addr), len, ProtFlags::PROT_NONE, flags) }
            .map(drop)
            .map_err(io::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom};

    const PAGE: usize = 4096;

    fn dup(shm: &SharedMemory) -> OwnedFd {
        shm.fd().expect("fd").try_clone_to_owned().expect("dup")
    }

    #[test]
    fn create_seals_and_maps() {
        let shm = SharedMemory::create("coroipc-test", 3 * PAGE).expect("create");
        assert_eq!(shm.len(), 3 * PAGE);
        assert!(!shm.is_empty());
        assert_eq!(shm.as_ptr() as usize % PAGE, 0, "mapping is page-aligned");

        // Seals read back through an independent (dup'd) fd.
        let other = dup(&shm);
        let seals = fcntl(other.as_raw_fd(), FcntlArg::F_GET_SEALS).expect("seals");
        let seals = SealFlag::from_bits_truncate(seals);
        assert!(seals.contains(REQUIRED_SEALS), "{seals:?}");
        assert!(!seals.contains(SealFlag::F_SEAL_WRITE), "{seals:?}");

        // The seals hold: neither side can resize or unseal.
        assert_eq!(
            nix::unistd::ftruncate(&other, PAGE as i64),
            Err(nix::errno::Errno::EPERM)
        );
        assert_eq!(
            nix::unistd::ftruncate(&other, 4 * PAGE as i64),
            Err(nix::errno::Errno::EPERM)
        );
        assert_eq!(
            fcntl(
                other.as_raw_fd(),
                FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_WRITE)
            ),
            Err(nix::errno::Errno::EPERM)
        );
        assert_eq!(
            fstat(other.as_raw_fd()).expect("fstat").st_size,
            3 * PAGE as i64
        );
    }

    #[test]
    fn create_rejects_bad_arguments() {
        let e = SharedMemory::create("x", 0).expect_err("zero length");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = SharedMemory::create("a\0b", PAGE).expect_err("NUL in name");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn writes_are_visible_through_a_second_mapping_and_the_fd() {
        let shm = SharedMemory::create("coroipc-test", 2 * PAGE).expect("create");
        let other = SharedMemory::from_fd_verified(dup(&shm), 2 * PAGE).expect("verified");
        assert_ne!(shm.as_ptr(), other.as_ptr(), "two distinct mappings");
        // SAFETY: offsets are within both 2-page mappings; this thread is the only
        // user of the memory.
        unsafe {
            shm.as_ptr().add(PAGE + 7).write(0xA5);
            other.as_ptr().add(3).write(0x5A);
            assert_eq!(other.as_ptr().add(PAGE + 7).read(), 0xA5);
            assert_eq!(shm.as_ptr().add(3).read(), 0x5A);
        }
        // And through the file itself.
        let mut file = std::fs::File::from(dup(&shm));
        file.seek(SeekFrom::Start(PAGE as u64 + 7)).expect("seek");
        let mut b = [0u8; 1];
        file.read_exact(&mut b).expect("read");
        assert_eq!(b[0], 0xA5);
    }

    #[test]
    fn rejects_wrong_size() {
        let shm = SharedMemory::create("coroipc-test", 2 * PAGE).expect("create");
        for wrong in [PAGE, 3 * PAGE, 2 * PAGE - 1, 0] {
            match SharedMemory::from_fd_verified(dup(&shm), wrong) {
                Err(ShmError::WrongSize { expected, actual }) => {
                    assert_eq!(expected, wrong);
                    assert_eq!(actual, 2 * PAGE as u64);
                }
                other => panic!("expected WrongSize for {wrong}, got {other:?}"),
            }
        }
    }

    #[test]
    fn rejects_unsealed_or_partly_sealed_memfd() {
        // No sealing allowed at all (F_SEAL_SEAL is set implicitly).
        let fd = memfd_create(c"unsealed", MemFdCreateFlag::MFD_CLOEXEC).expect("memfd");
        nix::unistd::ftruncate(&fd, PAGE as i64).expect("ftruncate");
        match SharedMemory::from_fd_verified(fd, PAGE) {
            Err(ShmError::NotSealed { seals }) => {
                assert_eq!(seals, SealFlag::F_SEAL_SEAL.bits());
            }
            other => panic!("expected NotSealed, got {other:?}"),
        }

        // Sealed against resizing but not against further sealing: refused too.
        let fd = memfd_create(
            c"half",
            MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
        )
        .expect("memfd");
        nix::unistd::ftruncate(&fd, PAGE as i64).expect("ftruncate");
        fcntl(
            fd.as_raw_fd(),
            FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW),
        )
        .expect("seal");
        assert!(matches!(
            SharedMemory::from_fd_verified(fd, PAGE),
            Err(ShmError::NotSealed { .. })
        ));
    }

    #[test]
    fn rejects_non_memfd() {
        // An eventfd, and a file on disk: they cannot carry seals, which is asked
        // before any file system is.
        let efd = nix::sys::eventfd::EventFd::new().expect("eventfd");
        assert!(matches!(
            SharedMemory::from_fd_verified(OwnedFd::from(efd), PAGE),
            Err(ShmError::Unsealable)
        ));
        // (procfs: never shmem, wherever the test binary lives.)
        let file = std::fs::File::open("/proc/self/stat").expect("procfs");
        assert!(matches!(
            SharedMemory::from_fd_verified(OwnedFd::from(file), PAGE),
            Err(ShmError::Unsealable)
        ));
        // A sealed hugetlbfs memfd passes the seals but is no tmpfs memfd (where the
        // kernel offers hugetlbfs at all).
        let Ok(fd) = memfd_create(
            c"huge",
            MemFdCreateFlag::MFD_CLOEXEC
                | MemFdCreateFlag::MFD_ALLOW_SEALING
                | MemFdCreateFlag::MFD_HUGETLB,
        ) else {
            return;
        };
        if fcntl(fd.as_raw_fd(), FcntlArg::F_ADD_SEALS(REQUIRED_SEALS)).is_err() {
            return;
        }
        assert!(matches!(
            SharedMemory::from_fd_verified(fd, PAGE),
            Err(ShmError::NotMemfd { .. })
        ));
    }

    #[test]
    fn rejects_write_sealed_memfd_without_panicking() {
        // Sealed against writes: mapping it shared read-write must fail cleanly.
        let fd = memfd_create(
            c"ro",
            MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
        )
        .expect("memfd");
        nix::unistd::ftruncate(&fd, PAGE as i64).expect("ftruncate");
        fcntl(
            fd.as_raw_fd(),
            FcntlArg::F_ADD_SEALS(REQUIRED_SEALS | SealFlag::F_SEAL_WRITE),
        )
        .expect("seal");
        assert!(matches!(
            SharedMemory::from_fd_verified(fd, PAGE),
            Err(ShmError::Io(_))
        ));
    }

    /// After `forget_pages` the range is still reserved, inaccessible and no longer
    /// the memfd's, and the memfd keeps what it had.
    #[test]
    fn forgotten_pages_leave_an_inaccessible_range_and_the_memfd_intact() {
        let shm = SharedMemory::create("coroipc-forget", 2 * PAGE).expect("create");
        let mut other = std::fs::File::from(dup(&shm));
        let at = shm.as_ptr().wrapping_add(PAGE + 8);
        // SAFETY: inside the mapping; no other thread uses it.
        unsafe { at.write_volatile(0x5a) };
        // SAFETY: nothing touches the mapping from here on.
        unsafe { shm.forget_pages() }.expect("forget");
        let mut byte = [0u8; 1];
        other
            .seek(SeekFrom::Start((PAGE + 8) as u64))
            .expect("seek");
        other.read_exact(&mut byte).expect("read");
        assert_eq!(byte[0], 0x5a, "the memfd kept its byte");
        // The line of /proc/self/maps whose range holds `at` (it may have merged with
        // a neighbour of the same kind).
        let at = at as usize;
        let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
        let line = maps
            .lines()
            .find(|l| {
                let range = l.split(' ').next().unwrap_or("");
                let mut ends = range.split('-').map(|x| usize::from_str_radix(x, 16));
                matches!((ends.next(), ends.next()), (Some(Ok(a)), Some(Ok(b))) if a <= at && at < b)
            })
            .expect("still reserved");
        assert!(!line.contains("memfd:"), "{line}");
        assert!(
            line.split(' ').nth(1).is_some_and(|p| p.starts_with("---")),
            "{line}"
        );
    }
}
