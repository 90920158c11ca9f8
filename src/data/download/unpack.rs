//! Unpacking a downloaded `.tar.gz` without trusting it: only the regular files directly inside
//! the one expected folder are written, each into a temporary folder beside the target; an
//! entry with an absolute path or a `..`, a link, a device or a FIFO refuses the whole archive
//! before anything reaches the target folder. The files are then renamed into place, so a file
//! under its final name is always whole, and a run that stops part-way leaves a data set that
//! says which files it lacks (the next run unpacks again).

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use tar::EntryType;

use super::{rename_durably, sync_parent};
use crate::error::{Error, Result};

/// The temporary folder's name: `.unpack.tmp-<process id>` inside the target folder.
const TMP_PREFIX: &str = ".unpack.tmp-";

/// Unpacks the regular files of `folder/` in the gzip-compressed tar `archive` into `dir`;
/// returns their names, in archive order.
pub(super) fn unpack_tar_gz(archive: &Path, folder: &str, dir: &Path) -> Result<Vec<OsString>> {
    remove_stale_temp_folders(dir);
    let tmp = dir.join(format!("{TMP_PREFIX}{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let result = extract(archive, folder, &tmp).and_then(|names| {
        for name in &names {
            rename_durably(&tmp.join(name), &dir.join(name))?;
        }
        sync_parent(&dir.join("x"));
        Ok(names)
    });
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// Writes the accepted files of the archive into `tmp`, refusing the archive at the first entry
/// that could write outside it.
fn extract(archive: &Path, folder: &str, tmp: &Path) -> Result<Vec<OsString>> {
    let bad = |detail: String| Error::data(archive, detail);
    let damaged = |e: io::Error| Error::data(archive, format!("damaged archive: {e}"));
    let file = File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut tar = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
    let mut names: Vec<OsString> = Vec::new();
    for entry in tar.entries().map_err(damaged)? {
        let mut entry = entry.map_err(damaged)?;
        let path: PathBuf = entry.path().map_err(damaged)?.into_owned();
        let mut parts = Vec::new();
        for component in path.components() {
            match component {
                Component::Normal(part) => parts.push(part.to_os_string()),
                Component::CurDir => {}
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                    return Err(bad(format!(
                        "refused: the entry {} points outside the folder it is unpacked into (an absolute path or ..)",
                        path.display()
                    )))
                }
            }
        }
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                match &parts[..] {
                    [top, name] if top.as_os_str() == folder => {
                        let out = tmp.join(name);
                        let mut f = File::create(&out).map_err(|e| Error::io(&out, e))?;
                        io::copy(&mut entry, &mut f).map_err(damaged)?;
                        f.sync_all().map_err(|e| Error::io(&out, e))?;
                        if !names.contains(name) {
                            names.push(name.clone());
                        }
                    }
                    // Other files (a read-me beside the folder) are not part of the data set.
                    _ => {}
                }
            }
            EntryType::Directory | EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink => {}
            other => {
                return Err(bad(format!(
                    "refused: the entry {} is a {} (only regular files are unpacked)",
                    path.display(),
                    describe(other)
                )))
            }
        }
    }
    if names.is_empty() {
        return Err(bad(format!("the archive holds no files in {folder}/")));
    }
    Ok(names)
}

fn describe(kind: EntryType) -> &'static str {
    match kind {
        EntryType::Symlink => "symbolic link",
        EntryType::Link => "hard link",
        EntryType::Char | EntryType::Block => "device",
        EntryType::Fifo => "FIFO",
        _ => "special entry",
    }
}

/// Removes the temporary folders that a killed run left (`.unpack.tmp-<pid>` of a process that
/// no longer runs; on Linux, where /proc tells). Best effort.
fn remove_stale_temp_folders(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(TMP_PREFIX)).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let alive = pid == std::process::id() || !cfg!(target_os = "linux") || Path::new("/proc").join(pid.to_string()).exists();
        if !alive && entry.path().is_dir() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
