//! Files that are never half written: a write goes to a temporary file beside the target,
//! is synced, and is renamed over it, so a crash, a kill or a full disk at any moment leaves
//! either the old file or the new one, whole. Checkpoints, metrics.csv and config.toml are
//! written this way.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Test hook (used by tests/crash_safety.rs, harmless otherwise): when the environment variable
/// `CONVNET_TEST_WRITE_HANDSHAKE` is `1`, [`write_atomically`] stops between writing the
/// temporary file and renaming it, prints [`HANDSHAKE_PREFIX`] and the file's name as one line
/// on stderr, and waits for a line (or the end) on stdin before it renames. A test reads that
/// line and then either answers, or kills the process knowing that the kill lands inside the
/// write: no clock, no polling.
#[doc(hidden)]
pub const WRITE_HANDSHAKE_ENV: &str = "CONVNET_TEST_WRITE_HANDSHAKE";

/// The start of the line the handshake prints: "convnet-test: inside the write of last.safetensors".
#[doc(hidden)]
pub const HANDSHAKE_PREFIX: &str = "convnet-test: inside the write of ";

/// With the handshake on, says which file is being written and waits for stdin (see
/// [`WRITE_HANDSHAKE_ENV`]).
fn handshake_inside_write(file_name: &str) {
    if crate::test_hooks::is_on(WRITE_HANDSHAKE_ENV) {
        crate::test_hooks::say_and_wait(format_args!("{HANDSHAKE_PREFIX}{file_name}"));
    }
}

/// The temporary file [`write_atomically`] writes before renaming it to `path`:
/// `.<file name>.tmp-<process id>` in the same folder (a rename is atomic only within one
/// file system).
fn temp_path(dir: &Path, file_name: &str) -> PathBuf {
    dir.join(format!(".{file_name}.tmp-{}", std::process::id()))
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it over `path`, then
/// syncs the folder: a crash at any moment leaves either the old file or the new one, whole.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "checkpoint".into());
    let tmp = temp_path(&dir, &file_name);
    let result = (|| {
        {
            // Written, synced and closed before the rename.
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        handshake_inside_write(&file_name);
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Removes the temporary files that [`write_atomically`] left in `dir` when a process was
/// killed between writing one and renaming it (`.<name>.tmp-<pid>`), except those of a process
/// that is still running (on Linux, where /proc tells). Returns how many were removed. The
/// files they would have replaced are intact: the old version is still in place.
pub(crate) fn remove_stale_temp_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((_, pid)) = name.strip_prefix('.').and_then(|n| n.rsplit_once(".tmp-")) else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        let alive = pid == std::process::id() || (cfg!(target_os = "linux") && Path::new("/proc").join(pid.to_string()).exists());
        if !alive && entry.path().is_file() && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_file_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        write_atomically(&path, b"old").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["metrics.csv"], "the temporary file was renamed, not left behind");
        // Into a folder that does not exist: an error naming the file, nothing written.
        let missing = dir.path().join("nowhere/last.safetensors");
        let err = write_atomically(&missing, b"x").unwrap_err().to_string();
        assert!(err.contains("nowhere/last.safetensors"), "{err}");
    }

    #[test]
    fn only_the_temporary_files_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| {
            std::fs::write(dir.path().join(name), b"partial").unwrap();
            dir.path().join(name)
        };
        // No process has this id (Linux ids stay below 2^22).
        let dead = [file(".last.safetensors.tmp-4000000000"), file(".metrics.csv.tmp-4000000001")];
        let ours = file(&format!(".best.safetensors.tmp-{}", std::process::id()));
        let unrelated = [file("last.safetensors"), file(".hidden"), file(".notes.tmp-abc")];
        let init = cfg!(target_os = "linux").then(|| file(".config.toml.tmp-1"));
        assert_eq!(remove_stale_temp_files(dir.path()), 2);
        assert!(dead.iter().all(|p| !p.exists()), "a dead process's files are removed");
        assert!(ours.exists(), "this process may still rename its own");
        assert!(unrelated.iter().all(|p| p.exists()), "other files are left alone");
        if let Some(init) = init {
            assert!(init.exists(), "process 1 is running: its file stays");
        }
        assert_eq!(remove_stale_temp_files(&dir.path().join("missing")), 0, "a missing folder has nothing to remove");
    }
}
