//! The message on stdin: what vdeliver accepts there, and how much of it
//! it must read.
//!
//! qmail-local hands over the message as a regular file (the queue file,
//! at offset 0); Postfix `pipe(8)` and hand tests (`--local`) give a pipe
//! or a socket. Rules, checked once at start-up before anything is opened:
//!
//! * fd 0 must be open. Rust's runtime reopens a closed fd 0 on `/dev/null`
//!   before `main`, so a closed fd 0 shows up as the `/dev/null` character
//!   device. qmail never gives a device, and an empty message comes from an
//!   empty file, so any character device (a terminal, `/dev/null`, ...) or
//!   other non-file is refused: 111 `#4.3.5`.
//! * A regular file: the message is exactly the bytes from the current
//!   offset to the file's size at start. If the file ends early (it shrank)
//!   or has more bytes after that (it grew) while being read, the delivery
//!   fails with 111 and nothing is made visible.
//! * A pipe or a socket has no size: the message is whatever the writer
//!   sent before closing its end. vdeliver cannot tell a writer that died
//!   mid-message from a complete short message: that promise is the
//!   writer's. A read error on the pipe is still 111.
//!
//! Any read error is 111.

use crate::outcome::Failure;
use rustix::fd::BorrowedFd;
use rustix::fs::FileType;
use rustix::io::Errno;

/// `/dev/null`'s device number (major 1, minor 3) on Linux.
const DEV_NULL: (u32, u32) = (1, 3);

/// The message source, checked.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub fd: BorrowedFd<'a>,
    /// For a regular file, the number of bytes the message has: the size at
    /// start less the starting offset. `None` for a pipe or a socket.
    pub length: Option<u64>,
}

impl<'a> Input<'a> {
    /// Check `fd` (stdin) against the rules in the module documentation.
    pub fn check(fd: BorrowedFd<'a>) -> Result<Input<'a>, Failure> {
        if let Err(e) = rustix::io::fcntl_getfd(fd) {
            return Err(Failure::config(format_args!(
                "stdin (fd 0) is not open ({e}); vdeliver reads the message from qmail-local"
            )));
        }
        let st = rustix::fs::fstat(fd)
            .map_err(|e| Failure::temporary(format_args!("fstat of stdin: {e}")))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {
                let size = u64::try_from(st.st_size).unwrap_or(0);
                let offset = rustix::fs::seek(fd, rustix::fs::SeekFrom::Current(0))
                    .map_err(|e| Failure::temporary(format_args!("lseek on stdin: {e}")))?;
                let length = size.checked_sub(offset).ok_or_else(|| {
                    Failure::config(format_args!(
                        "stdin is positioned at {offset}, past its end ({size} bytes)"
                    ))
                })?;
                Ok(Input {
                    fd,
                    length: Some(length),
                })
            }
            FileType::Fifo | FileType::Socket => Ok(Input { fd, length: None }),
            FileType::CharacterDevice => {
                let dev = (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev));
                if rustix::termios::isatty(fd) {
                    Err(Failure::config(
                        "stdin is a terminal; vdeliver reads the message from qmail-local",
                    ))
                } else if dev == DEV_NULL {
                    Err(Failure::config(
                        "stdin is /dev/null (was fd 0 closed?); qmail-local gives the message as a file, \
                         and an empty message must come from an empty file",
                    ))
                } else {
                    Err(Failure::config(
                        "stdin is a character device, not the message file or a pipe",
                    ))
                }
            }
            other => Err(Failure::config(format_args!(
                "stdin is a {}, not the message file or a pipe",
                match other {
                    FileType::Directory => "directory",
                    FileType::BlockDevice => "block device",
                    _ => "file of an unexpected type",
                }
            ))),
        }
    }
}

/// Read the whole message from `input`, handing it to `sink` chunk by
/// chunk through `buf`. For a regular file, exactly `length` bytes: an
/// early end or bytes beyond it are errors (111).
pub fn copy(
    input: Input<'_>,
    buf: &mut [u8],
    mut sink: impl FnMut(&[u8]) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut left = input.length;
    let mut got: u64 = 0;
    loop {
        let want = match left {
            Some(0) => break,
            Some(n) => buf.len().min(usize::try_from(n).unwrap_or(usize::MAX)),
            None => buf.len(),
        };
        let n = match read(input.fd, &mut buf[..want])? {
            0 => match (left, input.length) {
                (Some(_), Some(total)) => {
                    return Err(Failure::temporary(format_args!(
                        "reading the message: stdin ended after {got} of its {total} bytes \
                         (the file shrank while being read)"
                    )))
                }
                _ => return Ok(()),
            },
            n => n,
        };
        got += n as u64;
        if let Some(l) = left.as_mut() {
            *l -= n as u64;
        }
        sink(&buf[..n])?;
    }
    // A regular file read to its size at start: it must end there.
    let mut one = [0u8; 1];
    match read(input.fd, &mut one)? {
        0 => Ok(()),
        _ => Err(Failure::temporary(format_args!(
            "reading the message: stdin has more than its {got} bytes \
             (the file grew while being read)"
        ))),
    }
}

fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Failure> {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(Failure::temporary(format_args!("reading the message: {e}"))),
        }
    }
}
