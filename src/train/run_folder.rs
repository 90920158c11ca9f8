//! The run folder of a training: its files, and the rules that keep one run in it at a time.
//!
//! - **One training per folder**: an advisory lock on `.convnet.lock` in the folder, held for
//!   the whole run (the operating system releases it when the process ends, however it ends). A
//!   second training on the folder is refused at once with the process that holds it; the file
//!   holds that process's id. A lock file left by a process that was killed is taken over, with
//!   a note. On a file system that cannot lock, the run goes on without the lock, with a warning.
//! - **No silent overwrite**: a folder that holds an earlier run (a checkpoint or metrics.csv)
//!   is trained into only to resume it, or to replace it when asked (`--overwrite`).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::fs::remove_stale_temp_files;

/// The lock file's name in the run folder.
pub const LOCK_FILE: &str = ".convnet.lock";

/// The files an earlier run leaves, which `--overwrite` removes: the first three are the run
/// itself; the pictures are drawn from it (`convnet eval` draws confusion.png beside the
/// checkpoint).
const RUN_FILES: [&str; 7] =
    ["last.safetensors", "best.safetensors", "metrics.csv", "curves.png", "curves.svg", "confusion.png", "summary.json"];

/// What to do with a folder that already holds a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExistingRun {
    /// Continue it (`--resume`).
    Resume,
    /// Remove its files and start afresh (`--overwrite`).
    Overwrite,
    /// Refuse to touch it (the default).
    Refuse,
}

/// A run folder, locked for this process while the value lives.
pub(crate) struct RunFolder {
    pub dir: PathBuf,
    pub last: PathBuf,
    pub best: PathBuf,
    pub metrics: PathBuf,
    /// None where the file system cannot lock (some network mounts): the run goes on unguarded.
    _lock: Option<RunLock>,
    /// False for the other ranks of a distributed run, which read the folder (to resume) but
    /// leave every write to rank 0.
    pub writes: bool,
}

impl RunFolder {
    /// Creates the run folder (with its parents), locks it, removes the temporary files that a
    /// killed run left behind, and refuses an earlier run found there unless `existing` says
    /// to resume or replace it (see [`RunFolder::remove_earlier_run`]). A folder that cannot be
    /// created, is in use, or holds a run that `existing` refuses is an error naming it.
    pub fn open(dir: &Path, existing: ExistingRun, verbose: bool) -> Result<RunFolder> {
        if dir.exists() && !dir.is_dir() {
            return Err(Error::data(dir, "cannot use as the run folder: it is a file, not a folder"));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::data(dir, format!("cannot create the run folder: {e}")))?;
        let lock = RunLock::take(dir, verbose)?;
        // Only with the lock held: no other training can be inside a write now.
        remove_stale_temp_files(dir);
        let folder = RunFolder { _lock: lock, writes: true, ..RunFolder::follow(dir) };
        let found: Vec<&str> = RUN_FILES[..3].iter().copied().filter(|name| dir.join(name).exists()).collect();
        if existing == ExistingRun::Refuse && !found.is_empty() {
            return Err(Error::data(
                dir,
                format!(
                    "holds an earlier run ({}): continue it with --resume, or start afresh with --overwrite, which deletes \
                     its files; or train into another folder with --out",
                    found.join(", ")
                ),
            ));
        }
        Ok(folder)
    }

    /// The folder as the other ranks of a distributed run see it: its paths, to read the
    /// checkpoint a resumed run starts from; nothing created, locked or written.
    pub fn follow(dir: &Path) -> RunFolder {
        RunFolder {
            dir: dir.to_path_buf(),
            last: dir.join("last.safetensors"),
            best: dir.join("best.safetensors"),
            metrics: dir.join("metrics.csv"),
            _lock: None,
            writes: false,
        }
    }

    /// `--overwrite`: deletes the files of an earlier run (called once the new run's config and
    /// data have been checked, so that a typo does not cost the old run).
    pub fn remove_earlier_run(&self) -> Result<()> {
        for name in RUN_FILES {
            let path = self.dir.join(name);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(path, e)),
                _ => {}
            }
        }
        Ok(())
    }
}

/// The advisory lock on a run folder; released (and its file removed) when dropped, and by the
/// operating system when the process ends.
struct RunLock {
    path: PathBuf,
    file: File,
}

impl RunLock {
    /// The lock, or None where the file system has no locks (said when `verbose`).
    fn take(dir: &Path, verbose: bool) -> Result<Option<RunLock>> {
        let path = dir.join(LOCK_FILE);
        let mut file = match open_and_lock(&path, || open_lock_file(&path)).map_err(|e| Error::io(&path, e))? {
            Locked::Ours(file) => file,
            Locked::Held(mut file) => {
                let holder = holder_of(&mut file).map_or_else(|| "another process".to_string(), |pid| format!("process {pid}"));
                return Err(Error::data(
                    dir,
                    format!(
                        "the run folder is in use: another convnet train ({holder}) is training into it; wait for it to \
                         end, stop it (Ctrl-C, or kill -INT with its process id), or train into another folder with --out"
                    ),
                ));
            }
            Locked::Unsupported(e) => {
                // The lock guards against a mistake; a file system without locks should not
                // stop every training on it.
                // Said even when quiet: the run goes on without a guarantee it would have had.
                eprintln!("warning: {}: cannot lock the run folder ({e}): nothing stops a second training on it", dir.display());
                return Ok(None);
            }
        };
        // The lock is ours: a process id still in the file is that of a run that ended without
        // releasing it (killed, or its machine went down).
        let mut previous = String::new();
        let _ = file.read_to_string(&mut previous);
        if let Ok(pid) = previous.trim().parse::<u32>() {
            if verbose && pid != std::process::id() {
                eprintln!("note: {}: taking over the lock of process {pid}, which ended without releasing it (killed?)", dir.display());
            }
        }
        let write_pid = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            write!(file, "{}", std::process::id())?;
            file.flush()
        };
        write_pid(&mut file).map_err(|e| Error::io(&path, e))?;
        Ok(Some(RunLock { path, file }))
    }
}

/// The lock file, opened for reading and writing, created if missing, its contents kept.
fn open_lock_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)
}

/// What locking a lock file found.
enum Locked {
    /// The lock is ours.
    Ours(File),
    /// Another open file holds it.
    Held(File),
    /// The file system cannot lock.
    Unsupported(std::io::Error),
}

/// Opens the lock file at `path` with `open` and locks it without waiting. A holder that was
/// ending may remove the file between our open and our lock: the lock is then on a file that
/// no one else will open, so the file is opened again (a few times at most).
fn open_and_lock(path: &Path, mut open: impl FnMut() -> std::io::Result<File>) -> std::io::Result<Locked> {
    let mut reopened: usize = 0;
    loop {
        let file = open()?;
        match file.try_lock() {
            Ok(()) if !is_still_at(&file, path) && reopened < 10 => reopened += 1,
            Ok(()) => return Ok(Locked::Ours(file)),
            Err(TryLockError::WouldBlock) => return Ok(Locked::Held(file)),
            Err(TryLockError::Error(e)) => return Ok(Locked::Unsupported(e)),
        }
    }
}

/// Whether `path` still names the open `file` (not removed, nor replaced by another file).
fn is_still_at(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

/// The process id that the holder of a lock wrote into its file. The holder writes it right
/// after taking the lock, so an empty file is read again for a moment.
fn holder_of(file: &mut File) -> Option<u32> {
    for _ in 0..20 {
        let mut text = String::new();
        if file.seek(SeekFrom::Start(0)).is_ok() && file.read_to_string(&mut text).is_ok() {
            if let Ok(pid) = text.trim().parse() {
                return Some(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    None
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while still locked, so that no other process finds our id in it (unless the
        // path names another file by now); the lock itself goes with the file handle.
        if is_still_at(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_locked_folder_is_refused_with_the_holders_id_and_free_again_when_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunFolder::open(dir.path(), ExistingRun::Refuse, false).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap(), std::process::id().to_string());
        // A second lock in the same process is a second open file description: refused too.
        let err = RunFolder::open(dir.path(), ExistingRun::Refuse, false).err().expect("the folder is locked").to_string();
        assert!(err.contains(&format!("process {}", std::process::id())) && err.contains("in use"), "{err}");
        assert!(err.starts_with(&dir.path().display().to_string()), "{err}");
        drop(first);
        assert_eq!(names(dir.path()), Vec::<String>::new(), "the lock file goes with the lock");
        RunFolder::open(dir.path(), ExistingRun::Refuse, false).expect("free again");
    }

    #[test]
    fn a_lock_file_removed_between_its_open_and_its_lock_is_opened_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        let mut opens = 0;
        let open = || {
            opens += 1;
            let file = open_lock_file(&path)?;
            if opens == 1 {
                // What a holder that ends does: the file goes, our handle stays.
                std::fs::remove_file(&path)?;
            }
            Ok(file)
        };
        let Locked::Ours(file) = open_and_lock(&path, open).unwrap() else { panic!("nobody holds it") };
        assert!(is_still_at(&file, &path), "the lock is on the file that is there");
        assert_eq!(opens, 2, "opened once more, and only once");
        // Held by that open file, another is refused.
        let other = OpenOptions::new().read(true).write(true).open(&path).unwrap();
        assert!(matches!(open_and_lock(&path, || other.try_clone()).unwrap(), Locked::Held(_)));
        drop(file);

        // Removed and created again by someone else: another file (same device, another inode).
        std::fs::remove_file(&path).unwrap();
        let mut opens = 0;
        let replaced = || {
            opens += 1;
            let file = open_lock_file(&path)?;
            if opens == 1 {
                std::fs::remove_file(&path)?;
                std::fs::write(&path, "")?;
            }
            Ok(file)
        };
        let Locked::Ours(file) = open_and_lock(&path, replaced).unwrap() else { panic!("nobody holds it") };
        assert!(is_still_at(&file, &path));
        assert_eq!(opens, 2);
        drop(file);

        // A file that is removed every time: a bounded number of tries (11 opens), not a hang.
        let mut opens = 0;
        let vanishing = || {
            opens += 1;
            assert!(opens < 100, "still reopening");
            let file = open_lock_file(&path)?;
            std::fs::remove_file(&path)?;
            Ok(file)
        };
        assert!(matches!(open_and_lock(&path, vanishing).unwrap(), Locked::Ours(_)));
        assert_eq!(opens, 11);
    }

    #[test]
    fn a_file_that_cannot_be_removed_stops_an_overwrite_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("metrics.csv"), "old").unwrap();
        // A folder where a picture belongs: remove_file cannot remove it.
        std::fs::create_dir_all(dir.path().join("curves.png/inside")).unwrap();
        let folder = RunFolder::open(dir.path(), ExistingRun::Overwrite, false).unwrap();
        let err = folder.remove_earlier_run().expect_err("refused").to_string();
        assert!(err.contains("curves.png"), "{err}");
    }

    #[test]
    fn a_lock_file_left_by_a_dead_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), "4000000000").unwrap();
        let folder = RunFolder::open(dir.path(), ExistingRun::Refuse, false).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap(), std::process::id().to_string());
        drop(folder);
    }

    #[test]
    fn an_earlier_run_is_refused_resumed_or_overwritten_as_asked() {
        for (i, file) in ["last.safetensors", "best.safetensors", "metrics.csv"].into_iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(file), "old").unwrap();
            std::fs::write(dir.path().join("config.toml"), "old").unwrap();
            let err = RunFolder::open(dir.path(), ExistingRun::Refuse, false).err().expect("refused").to_string();
            assert!(
                err.contains(&format!("holds an earlier run ({file})")) && err.contains("--resume") && err.contains("--overwrite"),
                "{err}"
            );
            let mut both = vec!["config.toml", file];
            both.sort();
            assert_eq!(names(dir.path()), both, "a refusal changes nothing");
            drop(RunFolder::open(dir.path(), ExistingRun::Resume, false).unwrap());
            assert_eq!(names(dir.path()), both, "a resume keeps the run");
            if i == 0 {
                std::fs::write(dir.path().join("curves.svg"), "old").unwrap();
                std::fs::write(dir.path().join("confusion.png"), "old").unwrap();
            }
            let before = names(dir.path());
            let folder = RunFolder::open(dir.path(), ExistingRun::Overwrite, false).unwrap();
            let during: Vec<String> = names(dir.path()).into_iter().filter(|n| n != LOCK_FILE).collect();
            assert_eq!(during, before, "nothing is removed before the run has checked its data");
            folder.remove_earlier_run().unwrap();
            drop(folder);
            assert_eq!(names(dir.path()), ["config.toml"], "an overwrite removes the run's files");
        }
        // config.toml alone (written before the first epoch) is no run to protect.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), "old").unwrap();
        drop(RunFolder::open(dir.path(), ExistingRun::Refuse, false).unwrap());
    }
}
