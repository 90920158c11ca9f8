//! One file over HTTP(S) into its `.part` file, resuming what an earlier run left there.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{file_md5, RemoteFile};
use crate::error::{Error, Result};

/// How long to wait for a connection, and for each read of a stalled transfer: past that the
/// transfer stops as a cut one does (the `.part` is kept for the next run).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// What one transfer did.
pub(super) struct Fetched {
    /// Bytes received in this run.
    pub bytes: u64,
    /// Bytes of an earlier run's `.part` kept and appended to.
    pub resumed_from: u64,
}

/// An HTTP client for `url`: status codes are answers to look at, not errors; proxies from the
/// environment (`HTTPS_PROXY`, `NO_PROXY`...) are used, except for a loopback address.
pub(super) fn agent(url: &str) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_per_read(Some(READ_TIMEOUT))
        .user_agent(concat!("convnet/", env!("CARGO_PKG_VERSION")));
    if is_loopback(url) {
        config = config.proxy(None);
    }
    config.build().into()
}

fn is_loopback(url: &str) -> bool {
    let Ok(uri) = url.parse::<ureq::http::Uri>() else { return false };
    match uri.host() {
        Some(host) => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

/// Fetches `file.url` into `part`: appends to an existing `.part` through a Range request when
/// the server agrees (206), starts over when it answers the whole file (200). A `.part` that
/// the server finds already complete (416) is kept if its MD5 is the published one, else it is
/// deleted and the file fetched from the start. The caller checks the MD5 of the result.
pub(super) fn fetch_to_part(agent: &ureq::Agent, file: &RemoteFile, part: &Path, quiet: bool) -> Result<Fetched> {
    let url = file.url.as_str();
    let say = |line: String| {
        if !quiet {
            eprintln!("{line}");
        }
    };
    // At most two requests: a resume, then a fresh start if the resume cannot be used.
    for attempt in 0..2 {
        let offset = match std::fs::metadata(part) {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => return Err(Error::data(part, "is in the way of the download: not a regular file")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(Error::io(part, e)),
        };
        let mut request = agent.get(url);
        if offset > 0 {
            request = request.header("Range", format!("bytes={offset}-"));
        }
        let response = request.call().map_err(|e| Error::data(url, format!("the request failed: {e}")))?;
        let status = response.status();
        match status.as_u16() {
            200 => {
                if offset > 0 {
                    say(format!("{url}: the server sends the whole file instead of the rest: starting over"));
                }
                return receive(response, file, part, 0, quiet);
            }
            206 if offset > 0 => {
                let start = response.headers().get("content-range").and_then(|v| v.to_str().ok()).and_then(content_range_start);
                if start == Some(offset) {
                    say(format!("{}: resuming after {offset} bytes", file.file_name));
                    return receive(response, file, part, offset, quiet);
                }
                if attempt == 0 {
                    say(format!("{url}: the server resumed from another offset ({start:?}, not {offset}): starting over"));
                    remove(part)?;
                    continue;
                }
            }
            416 if offset > 0 => {
                // "Range Not Satisfiable": nothing lies after the .part's end; it may be whole.
                if file_md5(part)?.eq_ignore_ascii_case(&file.md5) {
                    return Ok(Fetched { bytes: 0, resumed_from: offset });
                }
                if attempt == 0 {
                    say(format!("{}: the {offset} bytes of {} do not match: starting over", file.file_name, part.display()));
                    remove(part)?;
                    continue;
                }
            }
            _ => {}
        }
        let reason = status.canonical_reason().map(|r| format!(" {r}")).unwrap_or_default();
        return Err(Error::data(url, format!("the server answered HTTP {}{reason}", status.as_u16())));
    }
    Err(Error::data(url, "the server's answers to a resumed download do not fit: delete the .part file and try again"))
}

/// The first byte of a `Content-Range: bytes <first>-<last>/<total>` header.
fn content_range_start(value: &str) -> Option<u64> {
    let range = value.trim().strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

fn remove(part: &Path) -> Result<()> {
    std::fs::remove_file(part).map_err(|e| Error::io(part, e))
}

/// Streams the body into `part`: appended after `offset` bytes, or replacing it when `offset`
/// is 0. Whatever arrived is synced before an error returns, so the next run resumes from it.
fn receive(response: ureq::http::Response<ureq::Body>, file: &RemoteFile, part: &Path, offset: u64, quiet: bool) -> Result<Fetched> {
    let url = file.url.as_str();
    let length = response.body().content_length();
    let out = if offset > 0 {
        OpenOptions::new().append(true).open(part)
    } else {
        OpenOptions::new().create(true).write(true).truncate(true).open(part)
    };
    let out = out.map_err(|e| Error::io(part, e))?;
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let bar = progress_bar(&file.file_name, length.map(|n| n + offset), offset, quiet);
    let mut reader = response.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    let stopped = loop {
        match reader.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => {
                out.write_all(&buf[..n]).map_err(|e| Error::io(part, e))?;
                received += n as u64;
                bar.inc(n as u64);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Some(e),
        }
    };
    let file_out = out.into_inner().map_err(|e| Error::io(part, e.into_error()))?;
    sync(&file_out, part)?;
    bar.finish_and_clear();
    let cut_short = length.is_some_and(|n| received < n);
    if stopped.is_some() || cut_short {
        let have = offset + received;
        let of = length.map(|n| format!(" of {}", n + offset)).unwrap_or_default();
        let why = stopped.map(|e| format!(" ({e})")).unwrap_or_default();
        return Err(Error::data(
            url,
            format!(
                "the transfer stopped after {have}{of} bytes{why}; they are kept in {}: run the command again to resume",
                part.display()
            ),
        ));
    }
    Ok(Fetched { bytes: received, resumed_from: offset })
}

fn sync(file: &File, part: &Path) -> Result<()> {
    file.sync_all().map_err(|e| Error::io(part, e))
}

/// Bytes, rate and time left on stderr (nothing when `quiet` or stderr is not a terminal).
fn progress_bar(name: &str, total: Option<u64>, done: u64, quiet: bool) -> ProgressBar {
    let target = if quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
    let (bar, template) = match total {
        Some(total) => {
            (ProgressBar::with_draw_target(Some(total), target), "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}, {eta} left")
        }
        None => (ProgressBar::with_draw_target(None, target), "{msg} {spinner} {bytes} {bytes_per_sec}"),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_string());
    bar.set_position(done);
    bar.reset_eta();
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_gives_the_first_byte() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes 0-0/*"), Some(0));
        assert_eq!(content_range_start("items 1-2/3"), None);
        assert_eq!(content_range_start("bytes */200"), None);
    }

    #[test]
    fn loopback_addresses_bypass_proxies() {
        assert!(is_loopback("http://127.0.0.1:8000/x"));
        assert!(is_loopback("http://localhost/x"));
        assert!(is_loopback("http://[::1]:80/x"));
        assert!(!is_loopback("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"));
        assert!(!is_loopback("not a url"));
    }
}
