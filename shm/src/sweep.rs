//! [`Arena::sweep_stale`]: removing the arena files that crashed servers left behind.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::arena::{Arena, FILE_PREFIX};
use crate::error::{Result, ShmError};
use crate::header::Header;
use crate::process;

impl Arena {
    /// Removes the arena files in `dir` whose creating server no longer runs (judged by the pid
    /// in the name and the start time in the header, so a reused pid does not keep a stale
    /// file). Run at server start, before [`Arena::create`]. Returns the removed paths.
    ///
    /// # Errors
    /// [`ShmError::Io`] when `dir` cannot be listed; files that vanish or cannot be read are
    /// skipped.
    pub fn sweep_stale(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
        let dir = dir.as_ref();
        let entries = fs::read_dir(dir).map_err(|source| ShmError::Io {
            op: "list",
            path: dir.to_path_buf(),
            source,
        })?;
        let mut removed = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(pid_in_name) else {
                continue;
            };
            let path = entry.path();
            let ticks = read_creator(&path)
                .filter(|(header_pid, _)| *header_pid == pid)
                .map_or(0, |(_, ticks)| ticks);
            if !process::is_alive(pid, ticks) && fs::remove_file(&path).is_ok() {
                removed.push(path);
            }
        }
        Ok(removed)
    }
}

/// The pid in an arena file name `mosec-arena-<pid>-<hex id>`, or `None` for other names.
fn pid_in_name(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(FILE_PREFIX)?;
    let (pid, id) = rest.split_once('-')?;
    u64::from_str_radix(id, 16).ok()?;
    pid.parse().ok()
}

/// `(creator pid, creator start ticks)` from an arena file's header, read without mapping it.
fn read_creator(path: &Path) -> Option<(u32, u64)> {
    let mut bytes = [0u8; 64];
    fs::File::open(path).ok()?.read_exact(&mut bytes).ok()?;
    Header::creator_from_bytes(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::MAGIC;
    use std::mem::offset_of;

    #[test]
    fn names_carry_the_pid() {
        assert_eq!(pid_in_name("mosec-arena-1234-00ff00ff00ff00ff"), Some(1234));
        assert_eq!(pid_in_name("mosec-arena-x-00ff"), None);
        assert_eq!(pid_in_name("mosec-arena-12"), None);
        assert_eq!(pid_in_name("other-1234-00ff"), None);
    }

    #[test]
    fn sweep_is_not_fooled_by_a_reused_pid() {
        let scratch = std::env::temp_dir().join(format!("shm-unit-{}-sweep", std::process::id()));
        fs::create_dir_all(&scratch).unwrap();
        let me = std::process::id();
        let ticks = process::start_ticks(me).unwrap();
        let fake = |name: &str, ticks: u64| {
            let mut bytes = vec![0u8; 4096];
            let put = |bytes: &mut Vec<u8>, at: usize, v: &[u8]| {
                bytes[at..at + v.len()].copy_from_slice(v);
            };
            put(&mut bytes, offset_of!(Header, magic), &MAGIC.to_le_bytes());
            put(&mut bytes, offset_of!(Header, creator_pid), &me.to_le_bytes());
            put(&mut bytes, offset_of!(Header, creator_start_ticks), &ticks.to_le_bytes());
            let path = scratch.join(format!("{FILE_PREFIX}{me}-{name}"));
            fs::write(&path, bytes).unwrap();
            path
        };
        let mine = fake("00000000000000aa", ticks);
        let older_owner = fake("00000000000000bb", ticks - 1);
        assert_eq!(Arena::sweep_stale(&scratch).unwrap(), vec![older_owner]);
        assert!(mine.exists());
        fs::remove_dir_all(&scratch).unwrap();
    }
}
