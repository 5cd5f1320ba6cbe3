//! The HTTPS clients of the TLS tests: real `curl` trusting one root only,
//! and the serial of the certificate `openssl s_client` is shown. Both go
//! to the test server's `--https` port on loopback.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::Server;

/// `curl` over HTTPS to nginx for `host`, trusting only `root`, with `extra`
/// curl flags (`--http1.1`, say).
pub fn https_get_with(server: &Server, root: &Path, host: &str, extra: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS"])
        .args(extra)
        .args(["--max-time", "10", "--cacert"])
        .arg(root)
        .arg("--resolve")
        .arg(format!("{host}:{}:127.0.0.1", server.https_port))
        .arg(format!("https://{host}:{}/", server.https_port))
        .output()
        .unwrap()
}

/// [`https_get_with`] and no more flags.
pub fn https_get(server: &Server, root: &Path, host: &str) -> Output {
    https_get_with(server, root, host, &[])
}

/// The serial of the certificate nginx presents for `host`.
pub fn served_serial(server: &Server, host: &str) -> String {
    let mut s_client = Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{}", server.https_port))
        .args(["-servername", host])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pem = s_client.stdout.take().unwrap();
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(pem)
        .output()
        .unwrap();
    let _ = s_client.wait();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
