//! Probe: the small HTTP/1.0 requests the daemon sends to what it runs (a
//! web container's health path, nginx's generation answer, nginx's route
//! table over its control socket), spoken by hyper's client.
//!
//! Every request is bounded: the caller's deadline covers connecting,
//! sending and reading, and a body longer than the caller's cap is refused,
//! never buffered. May touch: the one stream it is handed (TCP or unix
//! socket); nothing on disk.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Connecting failed (`connection refused`, …).
    #[error("{0}")]
    Connect(std::io::ErrorKind),
    #[error("no answer within {}s", .0.as_secs())]
    Timeout(Duration),
    #[error("connection closed without an HTTP answer")]
    NoAnswer,
    #[error("the answer is longer than {0} bytes")]
    TooLong(usize),
    #[error("{0}")]
    Request(String),
}

/// What came back: the status and, when asked for, the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as text (lossy: it is only ever compared or parsed).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.0 request.
#[derive(Debug, Clone)]
pub struct Probe<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub host: &'a str,
    pub user_agent: Option<&'a str>,
    pub body: &'a str,
    /// `None`: only the status line matters, the body is not read.
    pub max_body: Option<usize>,
}

impl<'a> Probe<'a> {
    /// A GET of `path` with `host` as Host, reading no body.
    pub fn get(path: &'a str, host: &'a str) -> Probe<'a> {
        Probe {
            method: "GET",
            path,
            host,
            user_agent: None,
            body: "",
            max_body: None,
        }
    }

    /// Also read the body, refusing one longer than `max` bytes.
    pub fn read_body(mut self, max: usize) -> Probe<'a> {
        self.max_body = Some(max);
        self
    }

    pub fn with_body(mut self, method: &'a str, body: &'a str) -> Probe<'a> {
        self.method = method;
        self.body = body;
        self
    }

    pub fn user_agent(mut self, agent: &'a str) -> Probe<'a> {
        self.user_agent = Some(agent);
        self
    }

    /// Send this request over `stream` and wait at most `limit` for the
    /// answer (status, and the body when asked for).
    pub async fn send<S>(&self, stream: S, limit: Duration) -> Result<Answer, ProbeError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        tokio::time::timeout(limit, self.exchange(stream))
            .await
            .map_err(|_| ProbeError::Timeout(limit))?
    }

    async fn exchange<S>(&self, stream: S) -> Result<Answer, ProbeError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ProbeError::Request(e.to_string()))?;
        // The connection is driven beside the request and ends with it (or
        // when this future is dropped at the deadline: it owns nothing else).
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let answer = self.ask(&mut sender).await;
        driver.abort();
        answer
    }

    async fn ask(
        &self,
        sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    ) -> Result<Answer, ProbeError> {
        let mut request = Request::builder()
            .method(self.method)
            .uri(self.path)
            .version(hyper::Version::HTTP_10)
            .header(hyper::header::HOST, self.host);
        if let Some(agent) = self.user_agent {
            request = request.header(hyper::header::USER_AGENT, agent);
        }
        if !self.body.is_empty() || self.method != "GET" {
            request = request.header(hyper::header::CONTENT_LENGTH, self.body.len());
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(self.body.as_bytes())))
            .map_err(|e| ProbeError::Request(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| {
            if e.is_incomplete_message() || e.is_closed() || e.is_parse() {
                ProbeError::NoAnswer
            } else {
                ProbeError::Request(e.to_string())
            }
        })?;
        let status = response.status().as_u16();
        let body = match self.max_body {
            None => Vec::new(),
            Some(max) => read_body(response.into_body(), max).await?,
        };
        Ok(Answer { status, body })
    }
}

async fn read_body(body: Incoming, max: usize) -> Result<Vec<u8>, ProbeError> {
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ProbeError::TooLong(max)),
        Err(_) => Err(ProbeError::NoAnswer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot server on a duplex pipe: returns what it was sent.
    async fn serve(
        answer: &'static [u8],
    ) -> (tokio::io::DuplexStream, tokio::task::JoinHandle<String>) {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let seen = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = server.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            server.write_all(answer).await.unwrap();
            drop(server);
            String::from_utf8_lossy(&got).into_owned()
        });
        (client, seen)
    }

    #[tokio::test]
    async fn sends_http10_with_host_and_reads_the_status() {
        let (stream, seen) = serve(b"HTTP/1.0 204 No Content\r\n\r\n").await;
        let answer = Probe::get("/health", "web.example")
            .user_agent("quarry-health")
            .send(stream, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(answer.status, 204);
        let seen = seen.await.unwrap().to_lowercase();
        assert!(seen.starts_with("get /health http/1.0\r\n"), "{seen}");
        assert!(seen.contains("host: web.example\r\n"), "{seen}");
        assert!(seen.contains("user-agent: quarry-health\r\n"), "{seen}");
    }

    #[tokio::test]
    async fn reads_a_body_to_the_end_of_the_connection() {
        let (stream, _) = serve(b"HTTP/1.0 200 OK\r\n\r\n42\n").await;
        let answer = Probe::get("/.quarry/generation", "quarry.invalid")
            .read_body(64)
            .send(stream, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(answer.text(), "42\n");
    }

    #[tokio::test]
    async fn refuses_a_body_over_the_cap() {
        let (stream, _) = serve(b"HTTP/1.0 200 OK\r\n\r\n0123456789abcdef").await;
        let err = Probe::get("/", "h")
            .read_body(8)
            .send(stream, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, ProbeError::TooLong(8)), "{err}");
    }

    #[tokio::test]
    async fn garbage_is_no_answer_and_silence_times_out() {
        let (stream, _) = serve(b"SSH-2.0-OpenSSH\r\n\r\n").await;
        let err = Probe::get("/", "h")
            .send(stream, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, ProbeError::NoAnswer), "{err}");
        let (stream, _keep) = tokio::io::duplex(64);
        let err = Probe::get("/", "h")
            .send(stream, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "no answer within 0s");
        // The health check's words for a closed port.
        assert_eq!(
            ProbeError::Connect(std::io::ErrorKind::ConnectionRefused).to_string(),
            "connection refused"
        );
    }
}
