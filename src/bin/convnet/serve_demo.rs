//! `convnet serve-demo`: serves the web demo (web/, docs/web.md) on 127.0.0.1.

use clap::Args;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use convnet::Error;
use tiny_http::{Header, Method, Request, Response, Server};

/// Serve the in-browser demo (web/: the engine compiled to WebAssembly, a drawing canvas, the
/// top-5 prediction, every layer's feature maps, the first layer's filters and a kernel
/// playground) on 127.0.0.1 only, and print its address. Build the WebAssembly first with
/// scripts/build_web.sh. Only files inside the folder are served, read-only; Ctrl-C stops it.
#[derive(Args)]
pub struct ServeDemoArgs {
    /// The port on 127.0.0.1 (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// The demo's folder (default: web/ in the current folder, else the one in the source tree
    /// this program was built from).
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub fn run(args: ServeDemoArgs) -> convnet::Result<()> {
    let dir = demo_folder(args.dir)?;
    let server = Server::http(("127.0.0.1", args.port))
        .map_err(|e| Error::invalid("--port", format!("cannot listen on 127.0.0.1:{}: {e}", args.port)))?;
    let port = server.server_addr().to_ip().map_or(args.port, |a| a.port());
    println!("serving {} at http://127.0.0.1:{port}/ (Ctrl-C to stop)", dir.display());
    let dir = Arc::new(dir);
    for request in server.incoming_requests() {
        // One thread per request, so that a client that stops reading holds up only itself.
        let dir = Arc::clone(&dir);
        std::thread::spawn(move || respond(&dir, request));
    }
    Ok(())
}

fn respond(dir: &Path, request: Request) {
    let response = match request.method() {
        Method::Get | Method::Head => match file_for(dir, request.url()).and_then(|path| Some((fs::read(&path).ok()?, path))) {
            Some((bytes, path)) => Response::from_data(bytes).with_header(header("Content-Type", content_type(&path))),
            None => not_found(),
        },
        _ => Response::from_string("only GET and HEAD are served\n").with_status_code(405),
    };
    // A client that went away is not the server's problem.
    let _ = request.respond(response.with_header(header("Cache-Control", "no-cache")));
}

/// The demo folder, canonical: `dir`, or web/ here, or web/ in the source tree; it must hold the
/// page and the built WebAssembly.
fn demo_folder(dir: Option<PathBuf>) -> convnet::Result<PathBuf> {
    let dir = dir.unwrap_or_else(|| {
        let here = PathBuf::from("web");
        if here.join("index.html").is_file() {
            here
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
        }
    });
    if !dir.join("index.html").is_file() {
        return Err(Error::data(&dir, "has no index.html: not the web demo's folder (pass --dir web from the repository)"));
    }
    for built in ["convnet_web_bg.wasm", "convnet_web.js"] {
        if !dir.join("pkg").join(built).is_file() {
            return Err(Error::data(&dir, format!("has no pkg/{built}: build the WebAssembly first with scripts/build_web.sh")));
        }
    }
    dir.canonicalize().map_err(|e| Error::io(&dir, e))
}

/// The file a request's URL names inside `dir` (canonical; "/" is index.html), or None for
/// anything that is not a plain path to a file in it: "..", hidden names, folders, and links
/// that lead outside it.
fn file_for(dir: &Path, url: &str) -> Option<PathBuf> {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let path = path.strip_prefix('/')?;
    let path = if path.is_empty() { "index.html" } else { path };
    let mut file = dir.to_path_buf();
    for part in path.split('/') {
        // ':' too: on Windows "C:" would replace the whole path.
        if part.is_empty() || part.starts_with('.') || part.contains(['\\', '%', ':']) {
            return None;
        }
        file.push(part);
    }
    let real = file.canonicalize().ok()?;
    (real.starts_with(dir) && real.is_file()).then_some(real)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "wasm" => "application/wasm",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "svg" => "image/svg+xml",
        "txt" | "md" | "toml" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("ASCII header")
}

fn not_found() -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string("not found\n").with_status_code(404)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_map_to_files_inside_the_folder_only() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("index.html"), "page").unwrap();
        fs::create_dir(dir.path().join("pkg")).unwrap();
        fs::write(dir.path().join("pkg").join("a.js"), "js").unwrap();
        fs::write(dir.path().join(".secret"), "no").unwrap();
        fs::write(dir.path().join("a:b"), "a drive letter on Windows").unwrap();
        let root = &dir.path().canonicalize().unwrap();
        assert_eq!(file_for(root, "/"), Some(root.join("index.html")));
        assert_eq!(file_for(root, "/?model=cifar10"), Some(root.join("index.html")));
        assert_eq!(file_for(root, "/pkg/a.js"), Some(root.join("pkg").join("a.js")));
        for bad in [
            "/../Cargo.toml",
            "/pkg/../index.html",
            "/.secret",
            "/pkg",
            "/pkg/",
            "//etc/passwd",
            "/%2e%2e/x",
            "/missing",
            "index.html",
            "/a:b",
        ] {
            assert_eq!(file_for(root, bad), None, "{bad}");
        }
    }

    #[test]
    fn wasm_and_modules_get_the_types_browsers_require() {
        assert_eq!(content_type(Path::new("pkg/convnet_web_bg.wasm")), "application/wasm");
        assert_eq!(content_type(Path::new("app.js")), "text/javascript; charset=utf-8");
        assert_eq!(content_type(Path::new("index.html")), "text/html; charset=utf-8");
        assert_eq!(content_type(Path::new("style.css")), "text/css; charset=utf-8");
        assert_eq!(content_type(Path::new("samples/index.json")), "application/json");
        assert_eq!(content_type(Path::new("samples/0.png")), "image/png");
        assert_eq!(content_type(Path::new("icon.svg")), "image/svg+xml");
        assert_eq!(content_type(Path::new("a.JPEG")), "application/octet-stream", "extensions are matched as written");
        assert_eq!(content_type(Path::new("a.jpeg")), "image/jpeg");
        assert_eq!(content_type(Path::new("models/m.toml")), "text/plain; charset=utf-8");
        assert_eq!(content_type(Path::new("models/x.safetensors")), "application/octet-stream");
    }
}
