//! Progress of long work (a deploy, a config change), streamed to whoever
//! started it: the pusher's `remote:` lines or an SSH command's stderr.
//!
//! Lines go through an unbounded channel so the pipeline never waits on a
//! slow client; a vanished client only means nobody reads them. Every line is
//! also kept for the deploy log.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

/// A sink for progress lines. Cloning shares the same sink.
#[derive(Clone, Default)]
pub struct Progress {
    tx: Option<mpsc::UnboundedSender<String>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Progress {
    /// A sink whose lines arrive on the returned receiver.
    pub fn channel() -> (Progress, mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Progress {
                tx: Some(tx),
                log: Arc::default(),
            },
            rx,
        )
    }

    /// A sink that only keeps the log (background work such as the reconciler).
    pub fn silent() -> Progress {
        Progress::default()
    }

    /// A step of the pipeline: `-----> Building myapp v3`.
    pub fn step(&self, text: impl AsRef<str>) {
        self.send(format!("-----> {}", text.as_ref()));
    }

    /// Detail under a step, indented.
    pub fn detail(&self, text: impl AsRef<str>) {
        for line in text.as_ref().lines() {
            self.send(format!("       {line}"));
        }
    }

    /// A warning or error line.
    pub fn warn(&self, text: impl AsRef<str>) {
        for line in text.as_ref().lines() {
            self.send(format!(" !     {line}"));
        }
    }

    fn send(&self, line: String) {
        if let Ok(mut log) = self.log.lock() {
            log.push(line.clone());
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(line);
        }
    }

    /// Everything said so far, for the deploy log.
    pub fn transcript(&self) -> String {
        let log = self.log.lock().map(|l| l.join("\n")).unwrap_or_default();
        log + "\n"
    }
}
