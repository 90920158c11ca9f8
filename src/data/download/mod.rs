//! Fetching a data set: `convnet download cifar10|fashion-mnist|mnist`.
//!
//! For each file of a [`DataSource`], in the target folder:
//!
//! 1. A file already there whose MD5 is the published one is kept ("already there"); one with
//!    another MD5 is fetched again (and replaced only once the new one checks out).
//! 2. The transfer goes to `<file>.part` beside it. A `.part` left by an earlier run is resumed
//!    with an HTTP `Range: bytes=<its length>-` request (206: appended; 200: the server ignores
//!    ranges, start over; 416: the `.part` is already whole, or bad: its MD5 decides). A
//!    transfer cut short keeps the `.part` and is an error that says to run the command again.
//! 3. The whole `.part` is checked against the published MD5: a mismatch deletes it and is an
//!    error naming the file and both checksums. Only a file that checks out is synced and
//!    renamed to its final name, so a file under its final name is always complete.
//! 4. An archive ([`Unpack::TarGz`]) is unpacked into a temporary folder beside it, and its
//!    files are then renamed into the target folder. Only the regular files of the archive's
//!    one expected folder are written; an absolute path, a `..` or a link refuses the archive.
//!    A run that stops part-way leaves whole files and a data set that says which it lacks.
//!
//! The target folder ends up as the data folder the readers take (`convnet train --data`): the
//! IDX files of (Fashion-)MNIST stay gzip-compressed, as [`crate::data::load_idx_dir`] reads
//! them so; CIFAR-10's `cifar-10-batches-bin/*` files are put directly in it.
//!
//! The sources are data ([`official_source`], or any [`DataSource`]), so tests fetch their own
//! small files from a server on 127.0.0.1.

// The fetching itself is native-only (ureq, files): a wasm32 build (web/) keeps the sources and
// checks, so `download` and the helpers only it uses are left out there.
#![cfg_attr(target_arch = "wasm32", allow(dead_code))]

#[cfg(not(target_arch = "wasm32"))]
mod http;
mod sources;
mod unpack;

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

pub use sources::{official_source, DATA_SET_NAMES};

use crate::error::{Error, Result};

/// One file to fetch: where from, its name in the target folder, its published MD5.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    pub url: String,
    /// The name in the target folder (a plain file name, no folders).
    pub file_name: String,
    /// The published MD5 checksum, 32 lowercase hex digits.
    pub md5: String,
}

impl RemoteFile {
    pub fn new(url: impl Into<String>, file_name: impl Into<String>, md5: impl Into<String>) -> Self {
        RemoteFile { url: url.into(), file_name: file_name.into(), md5: md5.into().to_ascii_lowercase() }
    }
}

/// What to do with the files once fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unpack {
    /// Nothing: the files are used as they are (the IDX reader reads `.gz` files itself).
    None,
    /// Each file is a gzip-compressed tar archive whose regular files inside `folder/` go into
    /// the target folder; anything else in it (other paths, links, devices) is refused.
    TarGz { folder: String },
}

/// A data set to fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataSource {
    /// The command's name for it, also the config's `dataset` (`fashion-mnist`).
    pub name: String,
    /// The name people know it by (`Fashion-MNIST`).
    pub title: String,
    pub files: Vec<RemoteFile>,
    pub unpack: Unpack,
    /// The files the reader needs in the target folder once fetched and unpacked. For a `.gz`
    /// name, the file without that suffix (unpacked by hand) counts too.
    pub layout: Vec<String>,
}

impl DataSource {
    /// The files of [`DataSource::layout`] missing from `dir` (all of them when `dir` is not a
    /// folder); empty when the data set is all there.
    pub fn missing_files(&self, dir: &Path) -> Vec<String> {
        let present =
            |name: &str| dir.join(name).exists() || name.strip_suffix(".gz").is_some_and(|raw| !raw.is_empty() && dir.join(raw).exists());
        if !dir.is_dir() {
            return self.layout.clone();
        }
        self.layout.iter().filter(|name| !present(name)).cloned().collect()
    }
}

/// How [`download`] behaves.
#[derive(Clone, Debug, Default)]
pub struct DownloadOptions {
    /// No progress bars or per-file lines on stderr.
    pub quiet: bool,
}

/// What became of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileOutcome {
    /// Present with the published MD5: not fetched.
    AlreadyThere,
    /// Fetched: `bytes` transferred in this run, after `resumed_from` bytes of an earlier
    /// run's `.part` (0 for a fresh download).
    Fetched { bytes: u64, resumed_from: u64 },
}

/// What [`download`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadReport {
    /// Each file of the source, in order, with what became of it.
    pub files: Vec<(String, FileOutcome)>,
    /// The files unpacked from archives, by their path in the target folder.
    pub unpacked: Vec<PathBuf>,
}

/// Fetches every file of `source` into `dir` (created if needed), checks each against its
/// published MD5, and unpacks archives; see the module documentation for the steps. On
/// success `dir` holds the data set in the layout its reader takes.
#[cfg(not(target_arch = "wasm32"))]
pub fn download(source: &DataSource, dir: &Path, options: &DownloadOptions) -> Result<DownloadReport> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for file in &source.files {
        check_file_name(&file.file_name)?;
        if file.md5.len() != 32 || !file.md5.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid("download", format!("{}: MD5 {:?} is not 32 hex digits", file.file_name, file.md5)));
        }
    }
    let say = |line: String| {
        if !options.quiet {
            eprintln!("{line}");
        }
    };
    let mut report = DownloadReport { files: Vec::new(), unpacked: Vec::new() };
    for file in &source.files {
        let target = dir.join(&file.file_name);
        if target.is_file() {
            let actual = file_md5(&target)?;
            if actual.eq_ignore_ascii_case(&file.md5) {
                say(format!("{}: already there (MD5 {actual} checked)", target.display()));
                report.files.push((file.file_name.clone(), FileOutcome::AlreadyThere));
                // A .part left beside a complete file is of no further use.
                let _ = std::fs::remove_file(part_path(&target));
                continue;
            }
            say(format!("{}: its MD5 is {actual}, not the published {}: fetching it again", target.display(), file.md5));
        }
        let part = part_path(&target);
        let fetched = http::fetch_to_part(&http::agent(&file.url), file, &part, options.quiet)?;
        let actual = file_md5(&part)?;
        if !actual.eq_ignore_ascii_case(&file.md5) {
            let removed = match std::fs::remove_file(&part) {
                Ok(()) => "deleted",
                Err(_) => "could not be deleted",
            };
            return Err(Error::data(
                &target,
                format!(
                    "checksum mismatch: the published MD5 is {} but the file fetched from {} has MD5 {actual} \
                     (the download, {}, was {removed}; run the command again, or check the source)",
                    file.md5,
                    file.url,
                    part.display()
                ),
            ));
        }
        rename_durably(&part, &target)?;
        say(format!("{}: MD5 {actual} checked", target.display()));
        report.files.push((file.file_name.clone(), FileOutcome::Fetched { bytes: fetched.bytes, resumed_from: fetched.resumed_from }));
    }
    if let Unpack::TarGz { folder } = &source.unpack {
        for file in &source.files {
            let archive = dir.join(&file.file_name);
            let names = unpack::unpack_tar_gz(&archive, folder, dir)?;
            say(format!("{}: unpacked {} files of {folder}/ into {}", archive.display(), names.len(), dir.display()));
            report.unpacked.extend(names.into_iter().map(|n| dir.join(n)));
        }
    }
    let missing = source.missing_files(dir);
    if !missing.is_empty() {
        return Err(Error::data(dir, format!("after the download, {} still lacks {}", source.title, missing.join(", "))));
    }
    Ok(report)
}

/// A path as one word of a POSIX shell command line (for the commands that messages suggest):
/// as it is when it holds only characters no shell treats specially, else in single quotes.
#[doc(hidden)]
pub fn shell_word(path: &Path) -> String {
    let text = path.to_string_lossy();
    let plain = !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+,:=@%".contains(c));
    if plain {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// `<file>.part`, beside the file.
pub fn part_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".part");
    target.with_file_name(name)
}

/// A file name must be one plain path component: a source cannot write outside its folder.
fn check_file_name(name: &str) -> Result<()> {
    let plain = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']);
    if plain {
        Ok(())
    } else {
        Err(Error::invalid("download", format!("file name {name:?} is not a plain file name")))
    }
}

/// The MD5 of a file, as 32 lowercase hex digits.
pub fn file_md5(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok(hex(&hasher.finalize()))
}

/// The MD5 of bytes in memory, as 32 lowercase hex digits.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex(&Md5::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Syncs `from`, renames it to `to` and syncs the folder, so the rename survives a crash (as
/// [`crate::fs::write_atomically`] does).
fn rename_durably(from: &Path, to: &Path) -> Result<()> {
    File::open(from).and_then(|f| f.sync_all()).map_err(|e| Error::io(from, e))?;
    std::fs::rename(from, to).map_err(|e| Error::io(to, e))?;
    sync_parent(to);
    Ok(())
}

/// Syncs the folder holding `path` (best effort: some file systems cannot).
fn sync_parent(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_of_known_inputs() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"The quick brown fox jumps over the lazy dog"), "9e107d9d372bb6826bd81d3542a419d6");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fox");
        std::fs::write(&path, b"The quick brown fox jumps over the lazy dog").unwrap();
        assert_eq!(file_md5(&path).unwrap(), "9e107d9d372bb6826bd81d3542a419d6");
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word(Path::new("data/fashion-mnist")), "data/fashion-mnist");
        assert_eq!(shell_word(Path::new("/home/me/my data")), "'/home/me/my data'");
        assert_eq!(shell_word(Path::new("it's")), r"'it'\''s'");
        assert_eq!(shell_word(Path::new("~/x")), "'~/x'");
    }

    #[test]
    fn part_files_sit_beside_their_target() {
        assert_eq!(part_path(Path::new("data/mnist/t10k-images-idx3-ubyte.gz")), Path::new("data/mnist/t10k-images-idx3-ubyte.gz.part"));
    }

    #[test]
    fn file_names_with_folders_are_refused() {
        for bad in ["", ".", "..", "../x", "a/b", "/etc/passwd", "a\\b"] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_file_name("train-images-idx3-ubyte.gz").is_ok());
    }

    #[test]
    fn missing_files_accepts_raw_or_gzip_idx_files() {
        let source = official_source("fashion-mnist").unwrap();
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(source.missing_files(&dir.path().join("absent")).len(), 4);
        std::fs::write(dir.path().join("train-images-idx3-ubyte"), b"").unwrap();
        std::fs::write(dir.path().join("train-labels-idx1-ubyte.gz"), b"").unwrap();
        assert_eq!(source.missing_files(dir.path()), ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]);
    }
}
