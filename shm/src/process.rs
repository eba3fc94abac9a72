//! Facts about processes, read from /proc without unsafe code: whether a pid still runs, and
//! when it started (to tell a live server from a new process that reused its pid).

use std::fs;

/// Start time of `pid` in clock ticks after boot (field 22 of `/proc/<pid>/stat`), or `None`
/// when the process does not exist or is a zombie.
pub(crate) fn start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?; // field 3
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok() // field 22 is the 19th after field 3
}

/// True when the process that has `pid` now is the one that started at `ticks` (0 = unknown:
/// any live process with that pid counts).
pub(crate) fn is_alive(pid: u32, ticks: u64) -> bool {
    match start_ticks(pid) {
        Some(now) => ticks == 0 || now == ticks,
        None => false,
    }
}

/// A random, non-zero 64-bit id from the kernel's generator.
pub(crate) fn random_id() -> std::io::Result<u64> {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    loop {
        fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        let id = u64::from_le_bytes(bytes);
        if id != 0 {
            return Ok(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_its_start_is_stable() {
        let me = std::process::id();
        let ticks = start_ticks(me).unwrap();
        assert!(is_alive(me, ticks));
        assert!(is_alive(me, 0));
        assert!(!is_alive(me, ticks + 1), "a different start time means pid reuse");
        assert!(!is_alive(u32::MAX - 1, 0), "no such pid");
    }

    #[test]
    fn ids_are_random() {
        assert_ne!(random_id().unwrap(), random_id().unwrap());
    }
}
