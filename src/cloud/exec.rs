//! The exec provider: runs the configured program once per request, the
//! request as one JSON object on stdin, the answer as one JSON object on
//! stdout (docs/providers.md). May touch: that program (spawned, killed on
//! timeout), nothing else.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::ProviderError;
use super::provider::{AddRequest, Machine, Provider, Size};
use crate::config::one_line;

/// Runs `command args…` once per request. Exit 0 with the answer, or
/// non-zero with `{"error": "…"}` on stdout or a reason on stderr.
pub struct Exec {
    pub command: PathBuf,
    pub args: Vec<String>,
    pub timeout: Duration,
}

impl Exec {
    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        request: serde_json::Value,
    ) -> Result<T, ProviderError> {
        let action = request["action"].as_str().unwrap_or("?").to_string();
        let fail = |reason: String| ProviderError::Exec {
            action: action.clone(),
            reason,
        };
        let mut child = tokio::process::Command::new(&self.command)
            .args(&self.args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("cannot run {}: {e}", self.command.display())))?;
        let mut stdin = child.stdin.take().expect("piped");
        let mut body = serde_json::to_vec(&request).expect("serializable");
        body.push(b'\n');
        // A provider that does not read its input still gets to answer.
        let _ = stdin.write_all(&body).await;
        drop(stdin);
        let out = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| {
                fail(format!(
                    "no answer within {:.1}s",
                    self.timeout.as_secs_f64()
                ))
            })?
            .map_err(|e| fail(e.to_string()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let answer: Option<serde_json::Value> = serde_json::from_str(stdout.trim()).ok();
        if let Some(error) = answer
            .as_ref()
            .and_then(|a| a.get("error"))
            .and_then(|e| e.as_str())
        {
            return Err(fail(one_line(error)));
        }
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let reason = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(one_line)
                .unwrap_or_else(|| format!("exited with {}", out.status));
            return Err(fail(reason));
        }
        let answer = answer.ok_or_else(|| {
            fail(format!(
                "answered no JSON object on stdout: {:?}",
                stdout.chars().take(200).collect::<String>()
            ))
        })?;
        serde_json::from_value(answer).map_err(|e| fail(format!("unexpected answer: {e}")))
    }
}

#[derive(Deserialize)]
struct SizesAnswer {
    sizes: Vec<Size>,
}

impl Provider for Exec {
    fn kind(&self) -> &'static str {
        "exec"
    }
    async fn ping(&self) -> Result<(), ProviderError> {
        self.call::<serde_json::Value>(serde_json::json!({"action": "ping"}))
            .await
            .map(|_| ())
    }
    async fn sizes(&self) -> Result<Vec<Size>, ProviderError> {
        self.call::<SizesAnswer>(serde_json::json!({"action": "sizes"}))
            .await
            .map(|a| a.sizes)
    }
    async fn add(&self, request: &AddRequest) -> Result<Machine, ProviderError> {
        let mut body = serde_json::to_value(request).expect("serializable");
        body["action"] = "add".into();
        self.call::<Machine>(body).await
    }
    async fn remove(&self, id: &str, name: &str) -> Result<(), ProviderError> {
        self.call::<serde_json::Value>(
            serde_json::json!({"action": "remove", "id": id, "name": name}),
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::Labels;

    fn exec(script: &str) -> (tempfile::TempDir, Exec) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provider");
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let exec = Exec {
            command: path,
            args: Vec::new(),
            timeout: Duration::from_secs(5),
        };
        (dir, exec)
    }

    fn request(name: &str) -> AddRequest {
        AddRequest {
            name: name.into(),
            size: "s1".into(),
            memory: 512,
            labels: Labels::new(),
        }
    }

    #[tokio::test]
    async fn exec_speaks_json_and_reports_failures_in_the_providers_words() {
        let (_d, p) = exec(
            r#"read req
case "$req" in
  *'"sizes"'*) echo '{"sizes":[{"name":"s1","cpus":2,"memory":1024,"price":0.01}]}' ;;
  *'"add"'*) case "$req" in *'"name":"auto-1"'*) echo '{"id":"m-1","docker":"tcp://10.0.0.9:2375","address":"10.0.0.9"}' ;; *'"name":"auto-3"'*) echo '{"id":"m-3","ssh":"quarry@10.0.0.7:2222","address":"10.0.0.7"}' ;; *) echo "bad request: $req" >&2; exit 3 ;; esac ;;
  *'"remove"'*) echo '{"error":"machine m-9 is not mine"}'; exit 1 ;;
  *) echo '{}' ;;
esac"#,
        );
        p.ping().await.unwrap();
        assert_eq!(
            p.sizes().await.unwrap(),
            vec![Size {
                name: "s1".into(),
                cpus: 2,
                memory: 1024,
                price: 0.01
            }]
        );
        let m = p.add(&request("auto-1")).await.unwrap();
        assert_eq!(
            (
                m.id.as_str(),
                m.docker.as_deref(),
                m.address.as_str(),
                m.memory
            ),
            ("m-1", Some("tcp://10.0.0.9:2375"), "10.0.0.9", None)
        );
        let m = p.add(&request("auto-3")).await.unwrap();
        assert_eq!(
            (m.docker.as_deref(), m.ssh.as_deref()),
            (None, Some("quarry@10.0.0.7:2222"))
        );
        let e = p.add(&request("auto-2")).await.unwrap_err().to_string();
        assert!(e.starts_with("provider exec (add): bad request: {"), "{e}");
        assert_eq!(
            p.remove("m-9", "auto-1").await.unwrap_err().to_string(),
            "provider exec (remove): machine m-9 is not mine"
        );
    }

    #[tokio::test]
    async fn exec_failures_without_words_are_still_explained() {
        let (_d, p) = exec("echo not json");
        assert!(
            p.ping()
                .await
                .unwrap_err()
                .to_string()
                .starts_with("provider exec (ping): answered no JSON object on stdout")
        );
        let (_d, p) = exec("exit 7");
        assert!(
            p.ping()
                .await
                .unwrap_err()
                .to_string()
                .contains("exited with exit status: 7")
        );
        let (_d, mut p) = exec("sleep 5");
        p.timeout = Duration::from_millis(200);
        assert_eq!(
            p.sizes().await.unwrap_err(),
            ProviderError::Exec {
                action: "sizes".into(),
                reason: "no answer within 0.2s".into()
            }
        );
        let p = Exec {
            command: "/nonexistent/provider".into(),
            args: Vec::new(),
            timeout: Duration::from_secs(1),
        };
        assert!(
            p.ping()
                .await
                .unwrap_err()
                .to_string()
                .starts_with("provider exec (ping): cannot run /nonexistent/provider:")
        );
    }
}
