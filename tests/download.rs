//! `convnet download` against a small HTTP/1.1 server written here, on 127.0.0.1: clean
//! downloads unpacked to the layout the readers take, a transfer cut short and resumed with a
//! Range request, a server that ignores ranges, a `.part` already whole (416), a wrong checksum,
//! an HTTP error, files already there, hostile archives, the exit code of the binary, and the
//! hint in the missing-data-set error. The real URLs are never contacted.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use convnet::data::download::{download, md5_hex, DataSource, DownloadOptions, FileOutcome, RemoteFile, Unpack};
use convnet::data::{load_cifar10_dir, load_idx_dir, write_cifar10_records, write_idx};
use convnet::train::datasets::load_train_test;
use convnet::Config;
use flate2::write::GzEncoder;
use flate2::Compression;

// ---------------------------------------------------------------------------------------------
// The server

/// A request as the server saw it.
#[derive(Clone, Debug)]
struct Request {
    path: String,
    range: Option<String>,
}

/// What the server answers.
enum Reply {
    /// 200 with the whole body.
    Full(Vec<u8>),
    /// 200 announcing the whole body's Content-Length, then only its first `send` bytes and a
    /// closed connection.
    Cut { body: Vec<u8>, send: usize },
    /// 206 with the bytes from `from` on, and their Content-Range.
    Partial { body: Vec<u8>, from: usize },
    /// This status with a short text body.
    Status(u16),
}

type Handler = Box<dyn Fn(&Request, usize) -> Reply + Send>;

/// A server on 127.0.0.1 that answers each request with `handler(request, index)`, one
/// connection at a time, and records every request before answering it.
struct Server {
    base: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    fn start(handler: Handler) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        // The thread lives until the test process ends; it only ever waits in accept().
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(request) = read_request(&mut stream) else { continue };
                let index = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(request.clone());
                    seen.len() - 1
                };
                let _ = answer(&mut stream, handler(&request, index));
            }
        });
        Server { base, requests }
    }

    /// A server holding `files` by name, which honours Range requests (206).
    fn files(files: HashMap<String, Vec<u8>>) -> Server {
        Server::start(Box::new(move |req, _| serve(&files, req)))
    }

    fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

/// The file named by the request's path, whole or from the Range's first byte.
fn serve(files: &HashMap<String, Vec<u8>>, req: &Request) -> Reply {
    let Some(body) = files.get(req.path.trim_start_matches('/')) else { return Reply::Status(404) };
    match req.range.as_deref().and_then(|r| r.strip_prefix("bytes=")).and_then(|r| r.strip_suffix('-')) {
        Some(from) => match from.parse::<usize>() {
            Ok(from) if from < body.len() => Reply::Partial { body: body.clone(), from },
            Ok(_) => Reply::Status(416),
            Err(_) => Reply::Status(400),
        },
        None => Reply::Full(body.clone()),
    }
}

fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.lines();
    let path = lines.next()?.split_whitespace().nth(1)?.to_string();
    let range = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim().eq_ignore_ascii_case("range").then(|| value.trim().to_string())
    });
    Some(Request { path, range })
}

fn answer(stream: &mut TcpStream, reply: Reply) -> std::io::Result<()> {
    let (status, extra, body, send) = match reply {
        Reply::Full(body) => ("200 OK".to_string(), String::new(), body.clone(), body.len()),
        Reply::Cut { body, send } => ("200 OK".to_string(), String::new(), body, send),
        Reply::Partial { body, from } => {
            let range = format!("Content-Range: bytes {from}-{}/{}\r\n", body.len() - 1, body.len());
            let rest = body[from..].to_vec();
            let n = rest.len();
            ("206 Partial Content".to_string(), range, rest, n)
        }
        Reply::Status(code) => {
            let body = format!("status {code}\n").into_bytes();
            let n = body.len();
            (format!("{code} Scripted"), String::new(), body, n)
        }
    };
    let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n", body.len());
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body[..send])?;
    stream.flush()
    // Dropping the stream closes the connection: after `send` bytes for a cut transfer.
}

// ---------------------------------------------------------------------------------------------
// Data to serve

/// Bytes that differ from position to position, so a misplaced byte changes the MD5.
fn bytes(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

const IDX_NAMES: [&str; 4] =
    ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"];

/// A small MNIST-style set (6 training and 3 test images of 5x4 pixels) as the four .gz files
/// the official sources serve, written with the crate's own IDX writer.
fn idx_files() -> HashMap<String, Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    write_idx(p(IDX_NAMES[0]), &[6, 5, 4], &bytes(6 * 20, 1), true).unwrap();
    write_idx(p(IDX_NAMES[1]), &[6], &[0, 1, 2, 3, 9, 5], true).unwrap();
    write_idx(p(IDX_NAMES[2]), &[3, 5, 4], &bytes(3 * 20, 2), true).unwrap();
    write_idx(p(IDX_NAMES[3]), &[3], &[7, 8, 9], true).unwrap();
    IDX_NAMES.iter().map(|n| (n.to_string(), std::fs::read(p(n)).unwrap())).collect()
}

/// A source for `files` on `server`, with their true checksums.
fn source(server: &Server, files: &HashMap<String, Vec<u8>>, names: &[&str], unpack: Unpack, layout: &[&str]) -> DataSource {
    DataSource {
        name: "test".into(),
        title: "Test".into(),
        files: names.iter().map(|n| RemoteFile::new(server.url(n), *n, md5_hex(&files[*n]))).collect(),
        unpack,
        layout: layout.iter().map(|s| s.to_string()).collect(),
    }
}

/// One file, served by `server`, with its checksum.
fn one_file(server: &Server, name: &str, body: &[u8]) -> DataSource {
    DataSource {
        name: "one".into(),
        title: "One".into(),
        files: vec![RemoteFile::new(server.url(name), name, md5_hex(body))],
        unpack: Unpack::None,
        layout: vec![name.into()],
    }
}

const QUIET: DownloadOptions = DownloadOptions { quiet: true };

const CIFAR_FILES: [&str; 6] =
    ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"];
const CIFAR_CLASSES: &str = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";

/// A CIFAR-10-style archive: cifar-10-batches-bin/ with five training batches of 2 records, a
/// test batch of 1, the class names and a read-me; and a file outside the folder.
fn cifar_archive() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    let mut dir_header = tar::Header::new_gnu();
    dir_header.set_entry_type(tar::EntryType::Directory);
    dir_header.set_mode(0o755);
    dir_header.set_size(0);
    tar.append_data(&mut dir_header, "cifar-10-batches-bin/", std::io::empty()).unwrap();
    for (i, name) in CIFAR_FILES.iter().enumerate() {
        let n = if i < 5 { 2 } else { 1 };
        let path = dir.path().join(name);
        let labels: Vec<u8> = (0..n).map(|k| ((i * 2 + k) % 10) as u8).collect();
        write_cifar10_records(&path, &bytes(n * 3072, i as u32), &labels).unwrap();
        tar.append_path_with_name(&path, format!("cifar-10-batches-bin/{name}")).unwrap();
    }
    append(&mut tar, "cifar-10-batches-bin/batches.meta.txt", CIFAR_CLASSES.as_bytes());
    append(&mut tar, "cifar-10-batches-bin/readme.html", b"<p>CIFAR</p>");
    append(&mut tar, "elsewhere/notes.txt", b"not part of the data set");
    tar.into_inner().unwrap().finish().unwrap()
}

fn append(tar: &mut tar::Builder<GzEncoder<Vec<u8>>>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, name, data).unwrap();
}

/// A .tar.gz of one entry whose name (and link target) are written raw into the header, as a
/// hostile archive would: the tar crate's own setters refuse `..`.
fn raw_archive(name: &str, kind: tar::EntryType, link: &str, data: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    append(&mut tar, "cifar-10-batches-bin/batches.meta.txt", CIFAR_CLASSES.as_bytes());
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_cksum();
    tar.append(&h, data).unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[track_caller]
fn assert_contains(text: &str, parts: &[&str]) {
    for p in parts {
        assert!(text.contains(p), "{text:?} should contain {p:?}");
    }
}

fn ten_classes() -> Vec<String> {
    (0..10).map(|d| d.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Downloads

#[test]
fn an_idx_set_downloads_into_the_folder_the_reader_takes_and_is_not_fetched_twice() {
    let files = idx_files();
    let server = Server::files(files.clone());
    let src = source(&server, &files, &IDX_NAMES, Unpack::None, &IDX_NAMES);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data/mnist"); // created by the download

    // Not quiet: the per-file lines go to stderr (the bars hide themselves off a terminal).
    let report = download(&src, &dir, &DownloadOptions { quiet: false }).unwrap();
    let fresh: Vec<_> =
        IDX_NAMES.iter().map(|n| (n.to_string(), FileOutcome::Fetched { bytes: files[*n].len() as u64, resumed_from: 0 })).collect();
    assert_eq!(report.files, fresh);
    assert_eq!(names_in(&dir), sorted(&IDX_NAMES), "the four files under their names, no .part left");
    for name in IDX_NAMES {
        assert_eq!(std::fs::read(dir.join(name)).unwrap(), files[name], "{name}");
    }
    let (train, test) = load_idx_dir(&dir, ten_classes()).unwrap();
    assert_eq!((train.len(), test.len(), train.height, train.width), (6, 3, 5, 4));
    assert_eq!(train.labels, [0, 1, 2, 3, 9, 5]);
    assert_eq!(test.images, bytes(60, 2));
    assert_eq!(server.requests().len(), 4);
    assert!(server.requests().iter().all(|r| r.range.is_none()), "nothing to resume: no Range");

    // Again: every file is there with its checksum, the server sees no request (and a stale
    // .part beside a complete file is removed).
    std::fs::write(dir.join("t10k-images-idx3-ubyte.gz.part"), b"stale").unwrap();
    let again = download(&src, &dir, &QUIET).unwrap();
    assert_eq!(names_in(&dir), sorted(&IDX_NAMES));
    assert!(again.files.iter().all(|(_, o)| *o == FileOutcome::AlreadyThere), "{:?}", again.files);
    assert_eq!(server.requests().len(), 4, "no request for files already there");
}

#[test]
fn a_cifar_archive_unpacks_its_folder_into_the_data_folder() {
    let archive = cifar_archive();
    let files = HashMap::from([("cifar-10-binary.tar.gz".to_string(), archive.clone())]);
    let server = Server::files(files.clone());
    let layout = [&CIFAR_FILES[..], &["batches.meta.txt"]].concat();
    let src = source(&server, &files, &["cifar-10-binary.tar.gz"], Unpack::TarGz { folder: "cifar-10-batches-bin".into() }, &layout);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cifar10");

    let report = download(&src, &dir, &QUIET).unwrap();
    assert_eq!(report.unpacked.len(), 8, "{:?}", report.unpacked);
    let mut expected = layout.clone();
    expected.extend(["readme.html", "cifar-10-binary.tar.gz"]);
    assert_eq!(names_in(&dir), sorted(&expected), "the folder's files directly in DIR, the archive beside them, no temporary folder");
    assert!(!root.path().join("elsewhere").exists() && !dir.join("elsewhere").exists(), "files outside the folder are not unpacked");
    let (train, test) = load_cifar10_dir(&dir).unwrap();
    assert_eq!((train.len(), test.len()), (10, 1));
    assert_eq!(train.labels, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(train.class_names[9], "truck");

    // Again: the archive checks out, nothing is fetched, the files are unpacked again whole.
    std::fs::remove_file(dir.join("data_batch_3.bin")).unwrap();
    let again = download(&src, &dir, &QUIET).unwrap();
    assert_eq!(again.files, [("cifar-10-binary.tar.gz".to_string(), FileOutcome::AlreadyThere)]);
    assert_eq!(server.requests().len(), 1);
    assert!(load_cifar10_dir(&dir).is_ok());
}

#[test]
fn a_cut_transfer_keeps_the_part_and_the_next_run_resumes_from_its_end() {
    let body = bytes(100_000, 7);
    let served = body.clone();
    let server = Server::start(Box::new(move |req, index| {
        if index == 0 {
            Reply::Cut { body: served.clone(), send: 40_000 }
        } else {
            serve(&HashMap::from([("big.bin".to_string(), served.clone())]), req)
        }
    }));
    let src = one_file(&server, "big.bin", &body);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("big.bin");
    let part = dir.path().join("big.bin.part");

    let err = download(&src, dir.path(), &QUIET).unwrap_err();
    assert!(err.is_user_error());
    assert_contains(&err.to_string(), &[&server.url("big.bin"), "40000 of 100000 bytes", "big.bin.part", "run the command again"]);
    assert!(!target.exists(), "a cut transfer never looks complete");
    assert_eq!(std::fs::read(&part).unwrap(), body[..40_000], "the bytes received are kept");

    let report = download(&src, dir.path(), &QUIET).unwrap();
    assert_eq!(report.files, [("big.bin".to_string(), FileOutcome::Fetched { bytes: 60_000, resumed_from: 40_000 })]);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].range.as_deref(), Some("bytes=40000-"), "resumed from the end of the .part");
    assert_eq!(std::fs::read(&target).unwrap(), body);
    assert!(!part.exists());
}

#[test]
fn a_server_that_ignores_the_range_sends_the_whole_file_again() {
    let body = bytes(5_000, 3);
    let served = body.clone();
    let server = Server::start(Box::new(move |_, _| Reply::Full(served.clone())));
    let src = one_file(&server, "f.gz", &body);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.gz.part"), b"stale bytes of another try").unwrap();

    let report = download(&src, dir.path(), &QUIET).unwrap();
    assert_eq!(report.files, [("f.gz".to_string(), FileOutcome::Fetched { bytes: 5_000, resumed_from: 0 })]);
    assert_eq!(server.requests()[0].range.as_deref(), Some("bytes=26-"));
    assert_eq!(std::fs::read(dir.path().join("f.gz")).unwrap(), body, "started over, not appended");
    assert!(!dir.path().join("f.gz.part").exists());
}

#[test]
fn a_part_that_is_already_whole_is_kept_when_the_server_answers_416() {
    let body = bytes(3_000, 4);
    let files = HashMap::from([("f.gz".to_string(), body.clone())]);
    let server = Server::files(files);
    let src = one_file(&server, "f.gz", &body);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.gz.part"), &body).unwrap();

    let report = download(&src, dir.path(), &QUIET).unwrap();
    assert_eq!(report.files, [("f.gz".to_string(), FileOutcome::Fetched { bytes: 0, resumed_from: 3_000 })]);
    assert_eq!(server.requests().len(), 1);
    assert_eq!(std::fs::read(dir.path().join("f.gz")).unwrap(), body);

    // A .part as long as the file but wrong: deleted, and the file fetched from the start.
    std::fs::remove_file(dir.path().join("f.gz")).unwrap();
    std::fs::write(dir.path().join("f.gz.part"), vec![0u8; 3_000]).unwrap();
    let report = download(&src, dir.path(), &QUIET).unwrap();
    assert_eq!(report.files, [("f.gz".to_string(), FileOutcome::Fetched { bytes: 3_000, resumed_from: 0 })]);
    let requests = server.requests();
    assert_eq!((requests[1].range.as_deref(), requests[2].range.as_deref()), (Some("bytes=3000-"), None));
    assert_eq!(std::fs::read(dir.path().join("f.gz")).unwrap(), body);
}

#[test]
fn a_wrong_checksum_is_refused_and_leaves_no_file() {
    let body = bytes(2_000, 5);
    let mut wrong = body.clone();
    wrong[1_000] ^= 1;
    let served = wrong.clone();
    let server = Server::start(Box::new(move |_, _| Reply::Full(served.clone())));
    let src = one_file(&server, "f.gz", &body);
    let dir = tempfile::tempdir().unwrap();

    let err = download(&src, dir.path(), &QUIET).unwrap_err().to_string();
    assert_contains(&err, &["f.gz", "checksum mismatch", &md5_hex(&body), &md5_hex(&wrong), "deleted"]);
    assert!(names_in(dir.path()).is_empty(), "neither the file nor its .part: {:?}", names_in(dir.path()));

    // A file already in place with another checksum is fetched again, and kept while the
    // new one does not check out.
    std::fs::write(dir.path().join("f.gz"), b"old").unwrap();
    assert!(download(&src, dir.path(), &QUIET).is_err());
    assert_eq!(std::fs::read(dir.path().join("f.gz")).unwrap(), b"old");
}

#[test]
fn an_http_error_names_the_url_and_the_status() {
    let server = Server::start(Box::new(|_, _| Reply::Status(500)));
    let src = one_file(&server, "f.gz", b"anything");
    let dir = tempfile::tempdir().unwrap();
    let err = download(&src, dir.path(), &QUIET).unwrap_err();
    assert!(err.is_user_error());
    assert_contains(&err.to_string(), &[&server.url("f.gz"), "HTTP 500"]);
    assert!(names_in(dir.path()).is_empty());

    // A server that is not there at all: the URL and the reason.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/f.gz", closed.local_addr().unwrap());
    drop(closed);
    let src = DataSource { files: vec![RemoteFile::new(&url, "f.gz", md5_hex(b"x"))], ..src };
    let err = download(&src, dir.path(), &QUIET).unwrap_err().to_string();
    assert_contains(&err, &[&url, "the request failed"]);
}

#[test]
fn hostile_archives_are_refused_and_write_nothing() {
    let cases = [
        ("../evil", tar::EntryType::Regular, ""),
        ("cifar-10-batches-bin/../../evil", tar::EntryType::Regular, ""),
        ("/tmp/convnet-download-test-evil", tar::EntryType::Regular, ""),
        ("cifar-10-batches-bin/data_batch_1.bin", tar::EntryType::Symlink, "/etc/passwd"),
        ("cifar-10-batches-bin/data_batch_2.bin", tar::EntryType::Link, "../../evil"),
        ("cifar-10-batches-bin/fifo", tar::EntryType::Fifo, ""),
    ];
    for (name, kind, link) in cases {
        let data: &[u8] = if kind == tar::EntryType::Regular { b"evil" } else { b"" };
        let archive = raw_archive(name, kind, link, data);
        let files = HashMap::from([("a.tar.gz".to_string(), archive)]);
        let server = Server::files(files.clone());
        let src = source(&server, &files, &["a.tar.gz"], Unpack::TarGz { folder: "cifar-10-batches-bin".into() }, &["batches.meta.txt"]);
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        let err = download(&src, &dir, &QUIET).unwrap_err().to_string();
        assert_contains(&err, &["a.tar.gz", "refused", name]);
        assert_eq!(names_in(&dir), ["a.tar.gz"], "{name}: nothing unpacked, not even the good entry before it");
        assert_eq!(names_in(&root.path().join("a")), ["b"], "{name}: nothing beside the folder");
        assert_eq!(names_in(root.path()), ["a"], "{name}: nothing above it");
    }
    assert!(!Path::new("/tmp/convnet-download-test-evil").exists());
}

// ---------------------------------------------------------------------------------------------
// The binary and the missing-data-set error

fn convnet(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_convnet")).args(args).output().expect("run convnet");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn the_command_exits_with_2_and_one_line_when_the_download_fails() {
    let server = Server::start(Box::new(|_, _| Reply::Status(503)));
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("mnist");
    let dir_s = dir.to_str().unwrap();
    let (code, stdout, stderr) = convnet(&["download", "mnist", "--dir", dir_s, "--mirror", &server.base, "--quiet"]);
    assert_eq!(code, 2, "stderr: {stderr}\nstdout: {stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert_contains(lines[0], &["error: ", &format!("{}/train-images-idx3-ubyte.gz", server.base), "HTTP 503"]);
    assert_eq!(server.requests()[0].path, "/train-images-idx3-ubyte.gz", "the mirror replaces the official host");
    assert!(names_in(&dir).is_empty(), "nothing written");

    let (code, _, stderr) = convnet(&["download", "mnist", "--dir", dir_s, "--mirror", "ftp://example.org"]);
    assert_eq!(code, 2);
    assert_contains(&stderr, &["--mirror", "not an http:// or https:// URL"]);
    let (code, _, stderr) = convnet(&["download", "imagenet"]);
    assert_eq!(code, 2, "clap's usage error");
    assert_contains(&stderr, &["cifar10", "fashion-mnist", "mnist"]);
}

fn config(dataset: &str) -> Config {
    let input = if dataset == "cifar10" { "[32, 32, 3]" } else { "[28, 28, 1]" };
    Config::from_toml(
        &format!(
            "name = \"t\"\ninput = {input}\n[data]\ndataset = \"{dataset}\"\n[train]\nbatch_size = 1\nepochs = 1\n\
             [optimizer]\nkind = \"sgd\"\nlr = 0.1\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 10\n"
        ),
        "t.toml",
    )
    .unwrap()
}

#[test]
fn a_missing_data_set_names_the_download_command() {
    let root = tempfile::tempdir().unwrap();
    let err = |dataset: &str, dir: &Path| load_train_test(&config(dataset), dir).map(|_| ()).expect_err("an error").to_string();
    let nowhere: PathBuf = root.path().join("nowhere");
    for name in ["cifar10", "fashion-mnist", "mnist"] {
        let e = err(name, &nowhere);
        assert_contains(&e, &[&format!("(download it with `convnet download {name} --dir {}`)", nowhere.display())]);
    }
    // An empty folder, and one lacking a file.
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_contains(&err("mnist", &empty), &["convnet download mnist --dir"]);
    let files = idx_files();
    let idx = root.path().join("idx");
    std::fs::create_dir(&idx).unwrap();
    for (name, data) in &files {
        std::fs::write(idx.join(name), data).unwrap();
    }
    std::fs::remove_file(idx.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    assert_contains(&err("fashion-mnist", &idx), &["t10k-labels-idx1-ubyte", "convnet download fashion-mnist --dir"]);

    // Every file there but one damaged: the error is about that file, with no download hint.
    std::fs::write(idx.join("t10k-labels-idx1-ubyte.gz"), b"not gzip").unwrap();
    let e = err("fashion-mnist", &idx);
    assert!(!e.contains("convnet download"), "{e}");
    // Image folders are not downloaded.
    assert!(!err("image-folder", &nowhere).contains("convnet download"));
}
