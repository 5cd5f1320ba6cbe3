//! Progress of long work (a deploy, a config change), streamed to whoever
//! started it: the pusher's `remote:` lines or an SSH command's stderr.
//!
//! Lines go through a bounded channel that the pipeline never waits on: when
//! a slow client lets it fill, lines are dropped and a marker saying how many
//! takes their place, so neither the deploy nor memory depends on the
//! client's speed. A vanished client only means nobody reads them. Every line
//! is also kept for the deploy log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

/// A sink for progress lines. Cloning shares the same sink.
#[derive(Clone, Default)]
pub struct Progress {
    tx: Option<mpsc::Sender<String>>,
    /// Lines the client missed since the last marker.
    dropped: Arc<AtomicU64>,
    log: Arc<Mutex<Vec<String>>>,
}

/// Lines held for a client that reads slower than the pipeline writes.
pub const QUEUE_LINES: usize = 4096;

impl Progress {
    /// A sink whose lines arrive on the returned receiver.
    pub fn channel() -> (Progress, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(QUEUE_LINES);
        (
            Progress {
                tx: Some(tx),
                dropped: Arc::default(),
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
            let missed = self.dropped.load(Ordering::SeqCst);
            if missed > 0 {
                let marker = format!(
                    " !     {missed} line(s) not shown: this client reads slower than they came"
                );
                if tx.try_send(marker).is_err() {
                    self.dropped.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                self.dropped.fetch_sub(missed, Ordering::SeqCst);
            }
            if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(line) {
                self.dropped.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Everything said so far, for the deploy log.
    pub fn transcript(&self) -> String {
        let log = self.log.lock().map(|l| l.join("\n")).unwrap_or_default();
        log + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_that_does_not_read_misses_lines_and_is_told_how_many() {
        let (p, mut rx) = Progress::channel();
        for i in 0..QUEUE_LINES + 10 {
            p.step(format!("line {i}"));
        }
        let mut got = 0;
        while rx.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, QUEUE_LINES);
        p.step("after");
        assert_eq!(
            rx.try_recv().unwrap(),
            " !     10 line(s) not shown: this client reads slower than they came"
        );
        assert_eq!(rx.try_recv().unwrap(), "-----> after");
        assert_eq!(p.transcript().lines().count(), QUEUE_LINES + 11);
    }
}
