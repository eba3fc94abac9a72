//! Whether the shared-memory folder can hold the arena, checked before the arena is created.
//!
//! Containers start with a 64 MiB `/dev/shm` (Docker's default; Kubernetes gives no more unless a
//! memory `emptyDir` is mounted there), far below the arena's default. `posix_fallocate` would
//! fail on the spot with a bare "no space left on device"; this check fails the start first with
//! what to change: the flag, the free bytes, and the container or Kubernetes setting.

use std::path::Path;

use crate::error::EngineError;

const MIB: u64 = 1 << 20;

/// Fails with [`EngineError::ShmTooSmall`] when `dir` has fewer than `size` bytes free.
///
/// # Errors
/// [`EngineError::ShmTooSmall`], or [`EngineError::ShmStat`] when `dir` cannot be inspected.
pub fn check(dir: &str, size: u64) -> Result<(), EngineError> {
    let stat = rustix::fs::statvfs(Path::new(dir))
        .map_err(|source| EngineError::ShmStat { dir: dir.to_owned(), source: source.into() })?;
    // Blocks an unprivileged process may use (f_bavail), in fragments of f_frsize bytes.
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    if free >= size {
        return Ok(());
    }
    Err(EngineError::ShmTooSmall { dir: dir.to_owned(), size, free, fix_mib: fix_mib(size) })
}

/// The shared-memory size to suggest, in MiB: the arena rounded up, plus 64 MiB for what else
/// uses /dev/shm in the container (Python's multiprocessing, the model's own libraries).
fn fix_mib(size: u64) -> u64 {
    size.div_ceil(MIB) + 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_that_fits_passes() {
        assert!(check("/dev/shm", 1).is_ok());
    }

    #[test]
    fn a_size_past_the_free_space_names_flag_free_bytes_and_fix() {
        let err = check("/dev/shm", u64::MAX).unwrap_err().to_string();
        assert!(err.contains("--shm-size"), "{err}");
        assert!(err.contains("bytes free"), "{err}");
        assert!(err.contains("docker run --shm-size="), "{err}");
        assert!(err.contains("medium: Memory"), "{err}");
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_it() {
        let err = check("/nonexistent-shm-dir", 1).unwrap_err().to_string();
        assert!(err.contains("/nonexistent-shm-dir"), "{err}");
    }

    #[test]
    fn the_fix_leaves_room_beyond_the_arena() {
        assert_eq!(fix_mib(1 << 30), 1024 + 64);
        assert_eq!(fix_mib(MIB + 1), 2 + 64);
    }
}
