//! `convnet serve-demo`: the web demo's files over HTTP on 127.0.0.1, with the types browsers
//! require, nothing outside the folder, and clear errors when the folder is not ready.
//! (web/tests/e2e.mjs drives the page itself in Chromium.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The server process, killed when the test ends however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `convnet serve-demo --port 0 --dir DIR` and returns it with the port it printed.
fn serve(dir: &Path) -> (Server, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_convnet"))
        .args(["serve-demo", "--port", "0", "--dir", dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let server = Server(child);
    let port = line
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (server, port)
}

/// One HTTP/1.1 request; the status line, the headers (lower-cased) and the body.
fn request(port: u16, method: &str, path: &str) -> (String, String, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header");
    let head = String::from_utf8(raw[..end].to_vec()).unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
    (status.to_string(), headers.to_lowercase(), raw[end + 4..].to_vec())
}

fn demo_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<!doctype html><title>demo</title>").unwrap();
    std::fs::create_dir(dir.path().join("pkg")).unwrap();
    std::fs::write(dir.path().join("pkg/convnet_web_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(dir.path().join("pkg/convnet_web.js"), "export default 1;").unwrap();
    std::fs::create_dir(dir.path().join("models")).unwrap();
    std::fs::write(dir.path().join("models/m.safetensors"), [7u8; 100]).unwrap();
    dir
}

#[test]
fn the_demo_is_served_with_the_types_browsers_require() {
    let dir = demo_folder();
    let (_server, port) = serve(dir.path());
    let (status, headers, body) = request(port, "GET", "/");
    assert!(status.ends_with("200 OK"), "{status}");
    assert!(headers.contains("content-type: text/html; charset=utf-8"), "{headers}");
    assert_eq!(body, b"<!doctype html><title>demo</title>");
    // WebAssembly.instantiateStreaming refuses a .wasm served with another type.
    let (status, headers, body) = request(port, "GET", "/pkg/convnet_web_bg.wasm");
    assert!(status.ends_with("200 OK"), "{status}");
    assert!(headers.contains("content-type: application/wasm"), "{headers}");
    assert_eq!(body, b"\0asm\x01\0\0\0");
    let (_, headers, _) = request(port, "GET", "/pkg/convnet_web.js?v=2");
    assert!(headers.contains("content-type: text/javascript"), "{headers}");
    let (_, headers, body) = request(port, "GET", "/models/m.safetensors");
    assert!(headers.contains("content-type: application/octet-stream"), "{headers}");
    assert_eq!(body, [7u8; 100]);
    let (status, _, body) = request(port, "HEAD", "/index.html");
    assert!(status.ends_with("200 OK") && body.is_empty(), "{status}");
}

#[test]
fn nothing_outside_the_folder_and_nothing_but_reading() {
    let parent = tempfile::tempdir().unwrap();
    std::fs::write(parent.path().join("secret.txt"), "no").unwrap();
    let web = parent.path().join("web");
    std::fs::create_dir(&web).unwrap();
    for entry in std::fs::read_dir(demo_folder().path()).unwrap() {
        let entry = entry.unwrap();
        let to = web.join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir(&to).unwrap();
            for f in std::fs::read_dir(entry.path()).unwrap() {
                let f = f.unwrap();
                std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
            }
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
    std::fs::write(web.join(".env"), "hidden").unwrap();
    // Links that lead outside the folder are not followed out of it; one inside it is.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(parent.path().join("secret.txt"), web.join("link.txt")).unwrap();
        std::os::unix::fs::symlink("/", web.join("root")).unwrap();
        std::os::unix::fs::symlink(web.join("index.html"), web.join("alias.html")).unwrap();
    }
    let (_server, port) = serve(&web);
    #[cfg(unix)]
    {
        let (status, _, body) = request(port, "GET", "/alias.html");
        assert!(status.ends_with("200 OK") && body.starts_with(b"<!doctype html>"), "{status}");
    }
    for path in
        ["/../secret.txt", "/pkg/../../secret.txt", "/%2e%2e/secret.txt", "/.env", "/pkg", "/missing.js", "/link.txt", "/root/etc/hostname"]
    {
        let (status, _, _) = request(port, "GET", path);
        assert!(status.ends_with("404 Not Found"), "{path}: {status}");
    }
    let (status, _, _) = request(port, "POST", "/index.html");
    assert!(status.contains("405"), "{status}");
}

fn serve_demo_error(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_convnet")).arg("serve-demo").args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn a_folder_that_is_not_ready_or_a_port_in_use_is_a_clear_error() {
    let empty = tempfile::tempdir().unwrap();
    let (code, stderr) = serve_demo_error(&["--port", "0", "--dir", empty.path().to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("has no index.html"), "{stderr}");

    let unbuilt = demo_folder();
    std::fs::remove_file(unbuilt.path().join("pkg/convnet_web_bg.wasm")).unwrap();
    let (code, stderr) = serve_demo_error(&["--port", "0", "--dir", unbuilt.path().to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("has no pkg/convnet_web_bg.wasm: build the WebAssembly first with scripts/build_web.sh"), "{stderr}");

    let half_built = demo_folder();
    std::fs::remove_file(half_built.path().join("pkg/convnet_web.js")).unwrap();
    let (code, stderr) = serve_demo_error(&["--port", "0", "--dir", half_built.path().to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("has no pkg/convnet_web.js"), "{stderr}");

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let ready = demo_folder();
    let (code, stderr) = serve_demo_error(&["--port", &port, "--dir", ready.path().to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{stderr}");
}

#[test]
fn a_client_that_stops_reading_holds_up_only_itself() {
    let dir = demo_folder();
    // Far more than the socket buffers hold, so the response to the stalled client cannot be
    // written out while it does not read.
    std::fs::write(dir.path().join("models/big.safetensors"), vec![1u8; 64 << 20]).unwrap();
    let (_server, port) = serve(dir.path());
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stalled, "GET /models/big.safetensors HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    // A second client is served meanwhile (a read timeout turns a hang into a failure).
    let mut other = TcpStream::connect(("127.0.0.1", port)).unwrap();
    other.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    write!(other, "GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    other.read_to_end(&mut raw).expect("served while the other client stalls");
    assert!(raw.starts_with(b"HTTP/1.1 200 OK"), "{}", String::from_utf8_lossy(&raw[..raw.len().min(100)]));
    drop(stalled);
}
