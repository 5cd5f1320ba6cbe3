//! Progress of long work (a deploy, a config change), streamed to whoever
//! started it: the pusher's `remote:` lines or an SSH command's stderr.
//!
//! Lines go through a bounded channel that never blocks the pipeline: when
//! a slow client lets it fill, lines are dropped and counted, and the client
//! is told how many once it catches up. A vanished client only means nobody
//! reads them. The deploy log keeps the last lines ([`TRANSCRIPT_LINES`]),
//! each cut to [`MAX_LINE`]: a build that prints forever costs no memory.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

/// Lines waiting for a slow client before new ones are dropped.
pub const CHANNEL_LINES: usize = 1024;

/// Lines kept for the deploy log (the last ones).
pub const TRANSCRIPT_LINES: usize = 2000;

/// Longest line kept or sent, in bytes; longer ones are cut.
pub const MAX_LINE: usize = 4096;

/// A sink for progress lines. Cloning shares the same sink.
#[derive(Clone, Default)]
pub struct Progress {
    tx: Option<mpsc::Sender<String>>,
    /// Lines the client missed since the last one it got.
    missed: Arc<AtomicUsize>,
    log: Arc<Mutex<Transcript>>,
}

#[derive(Default)]
struct Transcript {
    lines: VecDeque<String>,
    dropped: usize,
}

impl Progress {
    /// A sink whose lines arrive on the returned receiver.
    pub fn channel() -> (Progress, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(CHANNEL_LINES);
        (
            Progress {
                tx: Some(tx),
                ..Progress::default()
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

    fn send(&self, mut line: String) {
        if line.len() > MAX_LINE {
            let mut end = MAX_LINE;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
            line.push('…');
        }
        if let Ok(mut log) = self.log.lock() {
            if log.lines.len() == TRANSCRIPT_LINES {
                log.lines.pop_front();
                log.dropped += 1;
            }
            log.lines.push_back(line.clone());
        }
        let Some(tx) = &self.tx else { return };
        let missed = self.missed.load(Ordering::Relaxed);
        if missed > 0 {
            let note = format!(" !     ({missed} lines not shown: the connection was too slow)");
            if tx.try_send(note).is_err() {
                self.missed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.missed.fetch_sub(missed, Ordering::Relaxed);
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(line) {
            self.missed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The last lines said, for the deploy log.
    pub fn transcript(&self) -> String {
        let Ok(log) = self.log.lock() else {
            return "\n".into();
        };
        let mut out = String::new();
        if log.dropped > 0 {
            out.push_str(&format!("({} earlier lines not kept)\n", log.dropped));
        }
        for line in &log.lines {
            out.push_str(line);
            out.push('\n');
        }
        if out.is_empty() {
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_keeps_a_bounded_tail_and_tells_a_slow_client_what_it_missed() {
        let (p, mut rx) = Progress::channel();
        for i in 0..(CHANNEL_LINES + TRANSCRIPT_LINES + 10) {
            p.detail(format!("line {i}"));
        }
        p.detail("x".repeat(10 * MAX_LINE));
        let transcript = p.transcript();
        assert!(
            transcript.starts_with(&format!(
                "({} earlier lines not kept)\n",
                CHANNEL_LINES + 11
            )),
            "{}",
            &transcript[..80]
        );
        assert_eq!(transcript.lines().count(), TRANSCRIPT_LINES + 1);
        assert!(transcript.lines().all(|l| l.len() <= MAX_LINE + 3));
        // The client got the first lines only, then hears what it missed.
        let mut got = 0;
        while rx.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, CHANNEL_LINES);
        p.detail("after");
        assert_eq!(
            rx.try_recv().unwrap(),
            format!(
                " !     ({} lines not shown: the connection was too slow)",
                TRANSCRIPT_LINES + 11
            )
        );
        assert_eq!(rx.try_recv().unwrap(), "       after");
    }
}
