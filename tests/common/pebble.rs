//! A real ACME server on loopback for the HTTPS tests: Debian's `pebble`,
//! with `pebble-challtestsrv` as its DNS (every name 127.0.0.1), its own
//! listener's CA and certificate made with openssl, free ports, stopped by
//! PID on drop. Touches only its temp dir and the processes it starts.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// pebble and its DNS, stopped by PID on drop.
pub struct Pebble {
    dir: tempfile::TempDir,
    children: Vec<Child>,
    pub acme_port: u16,
    pub dns_mgmt_port: u16,
    mgmt_port: u16,
}

impl Pebble {
    /// A pebble whose HTTP-01 checks go to `http_port` on 127.0.0.1.
    pub fn start(http_port: u16) -> Pebble {
        Pebble::start_with_validity(http_port, None)
    }

    /// The same, issuing certificates valid for `validity` seconds.
    pub fn start_with_validity(http_port: u16, validity: Option<u64>) -> Pebble {
        Pebble::start_ports(http_port, free_port(), validity)
    }

    /// A pebble whose TLS-ALPN-01 checks go to `tls_port` on 127.0.0.1 and
    /// whose HTTP-01 checks go to a port nobody listens on.
    pub fn start_tls_alpn(tls_port: u16) -> Pebble {
        Pebble::start_ports(free_port(), tls_port, None)
    }

    fn start_ports(http_port: u16, tls_port: u16, validity: Option<u64>) -> Pebble {
        let mut dir = Some(tempfile::tempdir().unwrap());
        let p = &dir.as_ref().expect("the pebble dir").path().to_path_buf();
        // A CA and a localhost certificate for pebble's own listener.
        run(Command::new("openssl").current_dir(p).args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=quarry test ca",
        ]));
        run(Command::new("openssl").current_dir(p).args([
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.csr",
            "-subj",
            "/CN=localhost",
        ]));
        fs::write(
            p.join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        run(Command::new("openssl").current_dir(p).args([
            "x509",
            "-req",
            "-in",
            "cert.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]));
        // The ports are free when picked, but another test may take one
        // before pebble binds it: pebble then exits, and is started again on
        // new ports.
        for attempt in 1..=3 {
            let (dns, dns_mgmt, acme, mgmt) = (free_port(), free_port(), free_port(), free_port());
            fs::write(
                p.join("pebble.json"),
                serde_json::json!({"pebble": {
                    "listenAddress": format!("127.0.0.1:{acme}"),
                    "managementListenAddress": format!("127.0.0.1:{mgmt}"),
                    "certificate": p.join("cert.pem"),
                    "privateKey": p.join("key.pem"),
                    "httpPort": http_port,
                    "tlsPort": tls_port,
                    "ocspResponderURL": "",
                    "externalAccountBindingRequired": false,
                    "certificateValidityPeriod": validity.unwrap_or(90 * 24 * 3600)
                }})
                .to_string(),
            )
            .unwrap();
            let log = |name: &str| fs::File::create(p.join(name)).unwrap();
            let challtest = Command::new("pebble-challtestsrv")
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .args(["-dns01", &format!("127.0.0.1:{dns}")])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-management", &format!("127.0.0.1:{dns_mgmt}")])
                .stdout(log("challtestsrv.log"))
                .stderr(Stdio::null())
                .spawn()
                .expect("pebble-challtestsrv is not installed (apt-get install pebble)");
            let pebble = Command::new("pebble")
                .arg("-config")
                .arg(p.join("pebble.json"))
                .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0")
                .stdout(log("pebble.log"))
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut me = Pebble {
                dir: dir.take().expect("the pebble dir"),
                children: vec![challtest, pebble],
                acme_port: acme,
                dns_mgmt_port: dns_mgmt,
                mgmt_port: mgmt,
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                if me.curl(&[&me.directory()]).status.success() {
                    return me;
                }
                let exited = me
                    .children
                    .iter_mut()
                    .any(|c| c.try_wait().ok().flatten().is_some());
                if exited && attempt < 3 {
                    for c in &mut me.children {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                    dir = Some(std::mem::replace(&mut me.dir, tempfile::tempdir().unwrap()));
                    break;
                }
                assert!(
                    !exited && std::time::Instant::now() < deadline,
                    "pebble did not answer within 20s (attempt {attempt}):\n{}",
                    me.log()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// What pebble logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    pub fn curl(&self, args: &[&str]) -> std::process::Output {
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(self.ca())
            .args(args)
            .output()
            .unwrap()
    }

    /// The root the issued chains end in (pebble makes a new one per run).
    pub fn root(&self) -> PathBuf {
        let path = self.dir.path().join("issuer-root.pem");
        let out = self.curl(&[&format!("https://127.0.0.1:{}/roots/0", self.mgmt_port)]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::write(&path, &out.stdout).unwrap();
        path
    }

    /// Point `host` at `ip` in pebble's DNS.
    pub fn set_a(&self, host: &str, ip: &str) {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "-d"])
            .arg(serde_json::json!({"host": host, "addresses": [ip]}).to_string())
            .arg(format!("http://127.0.0.1:{}/add-a", self.dns_mgmt_port))
            .output()
            .unwrap();
        assert!(out.status.success());
    }

    /// config.yml for a Quarry that uses this pebble.
    pub fn config_yml(&self) -> String {
        format!(
            "tls:\n  acme:\n    directory: {}\n    email: ops@example.com\n    ca_bundle: {}\n",
            self.directory(),
            self.ca().display()
        )
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
