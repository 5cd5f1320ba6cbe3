//! A one-off or an `enter` attached to an SSH channel: the client's stdin
//! to the process, its stdout and stderr back as they are written (byte for
//! byte without a TTY; one stream through the TTY with one), window changes
//! to the TTY, and the exit code as the result. A closed channel or the
//! deadline stops the process; a one-off container is always removed.
//!
//! May touch: one engine (the container it creates, the exec it starts).

use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{ResizeContainerTTYOptionsBuilder, ResizeExecOptionsBuilder};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{EXIT_STOPPED, OneOffError, docker_err};
use crate::channel::{Closed, Input, Output, Terminal};

/// The channel a process is attached to.
pub struct Channel {
    pub input: Input,
    pub out: Output,
    pub closed: Closed,
    pub terminal: Option<Terminal>,
}

/// How an attached process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited(i64),
    /// The client went away first.
    Disconnected,
    TimedOut(Duration),
}

impl Ending {
    /// The exit status the SSH client sees.
    pub fn code(self) -> i64 {
        match self {
            Ending::Exited(code) => code,
            Ending::Disconnected | Ending::TimedOut(_) => EXIT_STOPPED,
        }
    }
}

/// Create `body` as `name` on `docker`, run it attached to `ch`, remove it.
pub async fn run(
    docker: &Docker,
    app: &str,
    name: &str,
    body: ContainerCreateBody,
    mut ch: Channel,
    deadline: Option<Duration>,
) -> Result<Ending, OneOffError> {
    let id = super::create(docker, app, name, body).await?;
    let result = attached(docker, app, &id, &mut ch, deadline).await;
    let _ = crate::launch::remove(docker, &id, 0).await;
    result
}

async fn attached(
    docker: &Docker,
    app: &str,
    id: &str,
    ch: &mut Channel,
    deadline: Option<Duration>,
) -> Result<Ending, OneOffError> {
    let attach = super::attach_and_start(docker, app, id, true).await?;
    let resize = ch.terminal.clone().map(|t| {
        let docker = docker.clone();
        let id = id.to_owned();
        follow_size(t, move |(w, h)| {
            let docker = docker.clone();
            let id = id.clone();
            async move {
                let options = ResizeContainerTTYOptionsBuilder::default()
                    .w(i32::from(w))
                    .h(i32::from(h))
                    .build();
                let _ = docker.resize_container_tty(&id, options).await;
            }
        })
    });
    let pumps = Pumps::start(attach.input, attach.output, ch);
    let wait = crate::launch::exit_code(docker, id);
    let ending = until_end(wait, &mut ch.closed, deadline).await;
    if let Some(task) = resize {
        task.abort();
    }
    match ending {
        Ending::Exited(_) => pumps.drain().await,
        Ending::Disconnected | Ending::TimedOut(_) => {
            pumps.abort();
            let _ = crate::launch::remove(docker, id, 0).await;
        }
    }
    Ok(ending)
}

/// Run `argv` in the running container `id`, attached to `ch`.
pub async fn exec(
    docker: &Docker,
    app: &str,
    id: &str,
    argv: Vec<String>,
    mut ch: Channel,
) -> Result<Ending, OneOffError> {
    let tty = ch.terminal.is_some();
    let mut env = Vec::new();
    if let Some(t) = &ch.terminal {
        env.push(format!("TERM={}", t.term));
    }
    let exec = docker
        .create_exec(
            id,
            CreateExecOptions {
                attach_stdin: Some(true),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(tty),
                env: Some(env),
                cmd: Some(argv),
                ..Default::default()
            },
        )
        .await
        .map_err(docker_err(app, "cannot start a process in the container"))?
        .id;
    let started = docker
        .start_exec(
            &exec,
            Some(StartExecOptions {
                detach: false,
                tty,
                output_capacity: None,
            }),
        )
        .await
        .map_err(docker_err(app, "cannot start a process in the container"))?;
    let StartExecResults::Attached { output, input } = started else {
        return Err(OneOffError::State {
            app: app.to_owned(),
            message: "the engine started the process detached".into(),
        });
    };
    // An exec's terminal starts at 0x0 (API 1.41 has no console size for
    // execs): its first size is set before any input is forwarded, so the
    // first command typed already sees it.
    if let Some(t) = &ch.terminal {
        let (w, h) = *t.size.borrow();
        let options = ResizeExecOptionsBuilder::default()
            .h(i32::from(h))
            .w(i32::from(w))
            .build();
        let _ = docker.resize_exec(&exec, options).await;
    }
    let resize = ch.terminal.clone().map(|t| {
        let docker = docker.clone();
        let exec = exec.clone();
        follow_size(t, move |(w, h)| {
            let docker = docker.clone();
            let exec = exec.clone();
            async move {
                let options = ResizeExecOptionsBuilder::default()
                    .h(i32::from(h))
                    .w(i32::from(w))
                    .build();
                let _ = docker.resize_exec(&exec, options).await;
            }
        })
    });
    let pumps = Pumps::start(input, output, &mut ch);
    let aborts = [pumps.stdin.abort_handle(), pumps.output.abort_handle()];
    // An exec's end is its output's end; its code is asked for after.
    let docker2 = docker.clone();
    let exec2 = exec.clone();
    let ended = async move {
        pumps.drain_forever().await;
        match docker2.inspect_exec(&exec2).await {
            Ok(info) => info.exit_code.unwrap_or(-1),
            Err(_) => -1,
        }
    };
    let ending = until_end(ended, &mut ch.closed, None).await;
    if let Some(task) = resize {
        task.abort();
    }
    // A client gone: dropping the attachment hangs the process up.
    for task in aborts {
        task.abort();
    }
    Ok(ending)
}

async fn until_end(
    exited: impl Future<Output = i64>,
    closed: &mut Closed,
    deadline: Option<Duration>,
) -> Ending {
    let timer = async {
        match deadline {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        code = exited => Ending::Exited(code),
        _ = closed.wait() => Ending::Disconnected,
        _ = timer => Ending::TimedOut(deadline.unwrap_or_default()),
    }
}

/// Calls `resize` with the terminal's size now and after each change.
fn follow_size<F, Fut>(mut t: Terminal, resize: F) -> tokio::task::JoinHandle<()>
where
    F: Fn((u16, u16)) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        loop {
            let size = *t.size.borrow_and_update();
            resize(size).await;
            if t.size.changed().await.is_err() {
                return;
            }
        }
    })
}

/// The two copies between a channel and an attached process.
struct Pumps {
    stdin: tokio::task::JoinHandle<()>,
    output: tokio::task::JoinHandle<()>,
}

type Attached =
    std::pin::Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

impl Pumps {
    fn start(
        mut writer: std::pin::Pin<Box<dyn AsyncWrite + Send>>,
        mut output: Attached,
        ch: &mut Channel,
    ) -> Pumps {
        // The channel's input moves into the copy; what is left is an empty
        // queue that ends at once.
        let (_, empty) = tokio::sync::mpsc::channel(1);
        let mut input = std::mem::replace(&mut ch.input, empty);
        let stdin = tokio::spawn(async move {
            while let Some(chunk) = input.recv().await {
                if writer.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            // Client EOF: half-close, so the process reads EOF too.
            let _ = writer.shutdown().await;
        });
        let out = ch.out.clone();
        let output = tokio::spawn(async move {
            while let Some(Ok(item)) = output.next().await {
                match item {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        out.out(message).await
                    }
                    LogOutput::StdErr { message } => out.err(message).await,
                    LogOutput::StdIn { .. } => {}
                }
            }
        });
        Pumps { stdin, output }
    }

    /// Waits (briefly) for the rest of the output after the process ended.
    async fn drain(self) {
        self.stdin.abort();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.output).await;
    }

    /// Waits until the output ends, however long.
    async fn drain_forever(self) {
        let _ = self.output.await;
        self.stdin.abort();
    }

    fn abort(self) {
        self.stdin.abort();
        self.output.abort();
    }
}
