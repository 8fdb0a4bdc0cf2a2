//! Sealed memfd shared memory: nothing in the filesystem to leak, and a peer cannot
//! shrink or grow it under us (so no `SIGBUS`), because it is sealed with
//! `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL` before it is shared.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use memmap2::{MmapOptions, MmapRaw};
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};

/// The seals a shared region must carry.
const REQUIRED_SEALS: SealFlag = SealFlag::F_SEAL_SHRINK
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_SEAL);

/// A received shared-memory fd was unusable.
#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    /// A system call failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The object's size is not the one announced.
    #[error("shared memory has {actual} bytes, {expected} expected")]
    WrongSize {
        /// Announced.
        expected: usize,
        /// Found.
        actual: u64,
    },
    /// The object lacks the seals that stop the peer resizing it.
    #[error("shared memory is not sealed against resizing (seals {0:#x})")]
    NotSealed(i32),
}

/// A sealed memfd mapped read-write and shared.
#[derive(Debug)]
pub struct SharedMemory {
    map: MmapRaw,
    file: File,
}

impl SharedMemory {
    /// Creates a memfd of `len` bytes, seals it and maps it.
    pub fn create(name: &str, len: usize) -> io::Result<Self> {
        let cname = CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name has NUL"))?;
        let fd = memfd_create(
            &cname,
            MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
        )
        .map_err(io::Error::from)?;
        let file = File::from(fd);
        file.set_len(len as u64)?;
        fcntl(file.as_raw_fd(), FcntlArg::F_ADD_SEALS(REQUIRED_SEALS)).map_err(io::Error::from)?;
        let map = MmapOptions::new().len(len).map_raw(&file)?;
        Ok(SharedMemory { map, file })
    }

    /// Adopts a memfd from the peer after checking its size and seals.
    pub fn from_fd_verified(fd: OwnedFd, expected_len: usize) -> Result<Self, ShmError> {
        let file = File::from(fd);
        let seals = fcntl(file.as_raw_fd(), FcntlArg::F_GET_SEALS).map_err(io::Error::from)?;
        if !SealFlag::from_bits_truncate(seals).contains(REQUIRED_SEALS) {
            return Err(ShmError::NotSealed(seals));
        }
        let actual = file.metadata()?.len();
        if actual != expected_len as u64 || expected_len == 0 {
            return Err(ShmError::WrongSize {
                expected: expected_len,
                actual,
            });
        }
        let map = MmapOptions::new().len(expected_len).map_raw(&file)?;
        Ok(SharedMemory { map, file })
    }

    /// Base address of the mapping (page-aligned).
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True for an empty mapping (never, for a valid region).
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The memfd, for passing to the peer.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_and_shared() {
        let shm = SharedMemory::create("t", 8192).expect("create");
        // SAFETY: in bounds of the mapping; single-threaded.
        unsafe { shm.as_ptr().add(100).write(42) };
        let dup = shm.fd().try_clone_to_owned().expect("dup");
        let other = SharedMemory::from_fd_verified(dup, 8192).expect("verified");
        // SAFETY: in bounds of the second mapping of the same memory.
        assert_eq!(unsafe { other.as_ptr().add(100).read() }, 42);
        let dup = shm.fd().try_clone_to_owned().expect("dup");
        assert!(matches!(
            SharedMemory::from_fd_verified(dup, 4096),
            Err(ShmError::WrongSize { .. })
        ));
        // Sealed: the peer cannot truncate it.
        assert!(shm.file.set_len(10).is_err());
    }

    #[test]
    fn unsealed_memfd_is_rejected() {
        let fd = memfd_create(c"u", MemFdCreateFlag::MFD_CLOEXEC).expect("memfd");
        let file = File::from(fd);
        file.set_len(4096).expect("len");
        assert!(matches!(
            SharedMemory::from_fd_verified(file.into(), 4096),
            Err(ShmError::NotSealed(_))
        ));
    }
}
