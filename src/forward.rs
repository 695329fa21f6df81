//! Forwarding through qmail-queue.
//!
//! One call for all remote recipients: the message on the child's fd 0,
//! the envelope on its fd 1 (`F<sender>\0`, `T<rcpt>\0` each, `\0`). The
//! envelope sender is passed unchanged, so a bounce stays `<>`. qmail-queue
//! exits 0 when the message is queued, 11–40 for a permanent refusal, and
//! anything else (or a signal) is temporary. qmail-queue only queues once
//! it has read a complete envelope, so a message that turns out to loop
//! while it is being streamed is abandoned by never sending the envelope.

use rustix::fd::OwnedFd;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Default location of qmail-queue.
pub const DEFAULT_QMAIL_QUEUE: &str = "/var/qmail/bin/qmail-queue";

/// What went wrong with qmail-queue.
#[derive(Debug)]
pub enum QueueError {
    /// It could not be started.
    Spawn(PathBuf, io::Error),
    /// Talking to it failed (and it did not explain with an exit code).
    Io(io::Error),
    /// It refused permanently (exit 11–40).
    Permanent(i32),
    /// It failed temporarily (any other exit code, or a signal: `None`).
    Temporary(Option<i32>),
}

impl std::fmt::Display for QueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueError::Spawn(p, e) => write!(f, "cannot run {}: {e}", p.display()),
            QueueError::Io(e) => write!(f, "qmail-queue: {e}"),
            QueueError::Permanent(c) => write!(f, "qmail-queue refused the message (exit {c})"),
            QueueError::Temporary(Some(c)) => write!(f, "qmail-queue failed (exit {c})"),
            QueueError::Temporary(None) => write!(f, "qmail-queue was killed by a signal"),
        }
    }
}

impl std::error::Error for QueueError {}

/// Which qmail-queue to run: `$QMAILQUEUE` when set and not empty, else the
/// configured path.
pub fn program(configured: &Path, env: Option<&str>) -> PathBuf {
    match env {
        Some(e) if !e.is_empty() => PathBuf::from(e),
        _ => configured.to_path_buf(),
    }
}

/// The envelope bytes. The sender is opaque: passed on exactly as given.
pub fn envelope(sender: &[u8], recipients: &[String]) -> Vec<u8> {
    let mut v = Vec::with_capacity(
        8 + sender.len() + recipients.iter().map(|r| r.len() + 2).sum::<usize>(),
    );
    v.push(b'F');
    v.extend_from_slice(sender);
    v.push(0);
    for r in recipients {
        v.push(b'T');
        v.extend_from_slice(r.as_bytes());
        v.push(0);
    }
    v.push(0);
    v
}

/// A running qmail-queue.
pub struct Queue {
    child: Child,
    envelope: Option<io::PipeWriter>,
    /// The message pipe, when the message is streamed.
    pub message: Option<std::process::ChildStdin>,
}

impl Queue {
    /// Start qmail-queue reading the message from `file` (already positioned
    /// at the first byte to send), or from a pipe when `file` is `None`.
    pub fn start(program: &Path, file: Option<OwnedFd>) -> Result<Queue, QueueError> {
        let (env_read, env_write) = io::pipe().map_err(QueueError::Io)?;
        let stdin = match file {
            Some(fd) => Stdio::from(fd),
            None => Stdio::piped(),
        };
        let mut child = Command::new(program)
            .stdin(stdin)
            .stdout(Stdio::from(env_read))
            .spawn()
            .map_err(|e| QueueError::Spawn(program.to_path_buf(), e))?;
        let message = child.stdin.take();
        Ok(Queue {
            child,
            envelope: Some(env_write),
            message,
        })
    }

    /// Send the envelope and wait: the message is queued when this returns
    /// `Ok`.
    pub fn finish(mut self, sender: &[u8], recipients: &[String]) -> Result<(), QueueError> {
        // End of message first: qmail-queue reads the message to EOF, then
        // the envelope.
        drop(self.message.take());
        let sent = match self.envelope.take() {
            Some(mut w) => w.write_all(&envelope(sender, recipients)),
            None => Ok(()),
        };
        let status = self.child.wait().map_err(QueueError::Io)?;
        match status.code() {
            Some(0) => sent.map_err(QueueError::Io),
            Some(c @ 11..=40) => Err(QueueError::Permanent(c)),
            c => Err(QueueError::Temporary(c)),
        }
    }

    /// Give up: qmail-queue gets no envelope, so it queues nothing.
    pub fn abandon(mut self) {
        drop(self.message.take());
        drop(self.envelope.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_bytes() {
        assert_eq!(envelope(b"", &["a@b".into()]), b"F\0Ta@b\0\0");
        assert_eq!(
            envelope(b"s@x", &["a@b".into(), "c@d".into()]),
            b"Fs@x\0Ta@b\0Tc@d\0\0"
        );
        assert_eq!(envelope(b"\xe9@x", &[]), b"F\xe9@x\0\0");
    }

    #[test]
    fn program_choice() {
        let p = Path::new(DEFAULT_QMAIL_QUEUE);
        assert_eq!(program(p, None), p);
        assert_eq!(program(p, Some("")), p);
        assert_eq!(program(p, Some("/x/qq")), Path::new("/x/qq"));
    }
}
