//! Tests that a broken build cannot pass (issue 10, "Tests that cannot be
//! fooled"). Each one watches what the real binary does — the system calls
//! with the paths they act on (`strace -y`), the files on disk, the exit
//! code — rather than counting calls:
//!
//! * durability: the message file is fsynced before it is linked into
//!   `new/`, and every `new/` is fsynced after its link and before exit 0;
//! * a symlink from inside the mail root to a complete Maildir outside it
//!   is refused, on the `openat2` path and on the walk fallback;
//! * the quota is charged only after the link into `new/`;
//! * the `maildirsize` lock really excludes: a delivery waits for a lock
//!   held by the test, then sees what changed under it.

use crate::common::site::{qmail_env, Run, Site};
use crate::common::unpriv::{chown_for_unpriv, temp_dir_for_unpriv};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const ALICE: &str = "example.com/alice/Maildir/";
const FROM: &str = "x@remote.org";
const MSG: &[u8] = b"From: x@remote.org\nSubject: hardening\n\nbody\n";

/// The system calls the traces below look at.
const TRACED: &str =
    "openat,openat2,write,fsync,fdatasync,linkat,renameat2,unlinkat,flock,exit_group";

/// One system call from `strace -f -y`, its `<unfinished ...>` and
/// `<... resumed>` halves joined.
#[derive(Debug, Clone)]
struct Call {
    name: String,
    args: String,
    ret: String,
    /// The line(s) as strace wrote them, for messages.
    raw: String,
}

impl Call {
    /// The paths strace printed for the fd arguments (`5</a/b>`), in order.
    fn fd_paths(&self) -> Vec<String> {
        let b = self.args.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'<' && i > 0 && (b[i - 1].is_ascii_digit() || b[i - 1] == b'D') {
                if let Some(end) = self.args[i + 1..].find('>') {
                    out.push(self.args[i + 1..i + 1 + end].to_string());
                    i += end + 2;
                    continue;
                }
            }
            if b[i] == b'"' {
                // Skip a quoted string (it may hold '<').
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            i += 1;
        }
        out
    }

    /// The quoted string arguments, escapes left as strace wrote them.
    fn strings(&self) -> Vec<String> {
        let b = self.args.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'"' {
                let start = i + 1;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                out.push(self.args[start..i.min(b.len())].to_string());
            }
            i += 1;
        }
        out
    }

    fn ok(&self) -> bool {
        self.ret == "0" || self.ret.starts_with("0 ") || self.ret.starts_with("0<")
    }

    /// For a successful `linkat`/`renameat2`: (source path, target dir,
    /// target path).
    fn link(&self) -> Option<(String, String, String)> {
        if !matches!(self.name.as_str(), "linkat" | "renameat2") || !self.ok() {
            return None;
        }
        let dirs = self.fd_paths();
        let names = self.strings();
        if dirs.len() < 2 || names.len() < 2 {
            return None;
        }
        Some((
            format!("{}/{}", dirs[0], names[0]),
            dirs[1].clone(),
            format!("{}/{}", dirs[1], names[1]),
        ))
    }
}

/// Parse an `strace -f -y -o FILE` output.
fn parse_trace(text: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut pending: HashMap<String, (usize, String)> = HashMap::new();
    for line in text.lines() {
        let (pid, rest) = match line.split_once(' ') {
            Some((p, r)) if p.chars().all(|c| c.is_ascii_digit()) => {
                (p.to_string(), r.trim_start())
            }
            _ => (String::new(), line),
        };
        if rest.starts_with("+++") || rest.starts_with("---") {
            continue;
        }
        let full = if let Some(r) = rest.strip_prefix("<... ") {
            // "<... fsync resumed>) = 0"
            let Some((_, tail)) = r.split_once(" resumed>") else {
                continue;
            };
            let Some((pos, head)) = pending.remove(&pid) else {
                continue;
            };
            let joined = format!("{head}{tail}");
            calls.remove(pos);
            joined
        } else if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            pending.insert(pid.clone(), (calls.len(), head.to_string()));
            // A placeholder keeps the position; replaced when resumed.
            calls.push(Call {
                name: String::new(),
                args: String::new(),
                ret: String::new(),
                raw: line.to_string(),
            });
            continue;
        } else {
            rest.to_string()
        };
        let Some(open) = full.find('(') else { continue };
        let name = full[..open].to_string();
        let Some(eq) = full.rfind(") = ").or_else(|| full.rfind(")= ")) else {
            // exit_group(0) = ? has ") " then spaces then "= ?".
            if let Some(close) = full.rfind(')') {
                let ret = full[close + 1..].trim().trim_start_matches('=').trim();
                calls.push(Call {
                    name,
                    args: full[open + 1..close].to_string(),
                    ret: ret.to_string(),
                    raw: full.clone(),
                });
            }
            continue;
        };
        let args = full[open + 1..eq].to_string();
        let ret = full[eq..]
            .trim_start_matches(')')
            .trim()
            .trim_start_matches('=');
        calls.push(Call {
            name,
            args,
            ret: ret.trim().to_string(),
            raw: full.clone(),
        });
    }
    calls.retain(|c| !c.name.is_empty());
    calls
}

/// vdeliver under `strace -f -y`, tracing [`TRACED`]; `extra` goes to
/// strace too (e.g. an `-e inject=...`).
fn traced(s: &Site, to: &str, extra: &[&str]) -> (Run, Vec<Call>, String) {
    let out = s.dir.path().join("hardening-trace.out");
    let _ = fs::remove_file(&out);
    let mut args = vec![out.to_str().unwrap(), "-e"];
    let trace = format!("trace={TRACED}");
    args.push(&trace);
    args.extend_from_slice(extra);
    let r: Run = s
        .command_via(
            &qmail_env(to, FROM),
            &["strace", "-f", "-qq", "-y", "-s", "256", "-o"],
            &args,
        )
        .stdin(s.message_file(MSG))
        .output()
        .unwrap()
        .into();
    let text = fs::read_to_string(&out).unwrap_or_default();
    (r, parse_trace(&text), text)
}

fn index_of(calls: &[Call], f: impl Fn(&Call) -> bool) -> Option<usize> {
    calls.iter().position(f)
}

/// The durability order, read from the trace: every message file is
/// fsynced (as itself, not its directory) before it is linked into a
/// `new/`, with no write after that fsync; every `new/` linked into is
/// fsynced after its last link and before `exit_group(0)`. Returns the
/// `new/` directories.
fn assert_durable_order(calls: &[Call], text: &str) -> Vec<String> {
    let exit = index_of(calls, |c| c.name == "exit_group")
        .unwrap_or_else(|| panic!("no exit_group in the trace:\n{text}"));
    assert_eq!(calls[exit].args, "0", "exit status:\n{text}");
    // Paths whose data is on disk (the same inode under its other names
    // too, once linked).
    let mut synced: HashSet<String> = HashSet::new();
    let mut last_link: BTreeMap<String, usize> = BTreeMap::new();
    for (i, c) in calls[..exit].iter().enumerate() {
        match c.name.as_str() {
            "fsync" | "fdatasync" if c.ok() => {
                if let Some(p) = c.fd_paths().first() {
                    synced.insert(p.clone());
                }
            }
            "write" => {
                if let Some(p) = c.fd_paths().first() {
                    synced.remove(p);
                }
            }
            _ => {}
        }
        if let Some((src, dir, dst)) = c.link() {
            if dir.ends_with("/new") {
                assert!(
                    synced.contains(&src),
                    "{src} was linked into {dir} before the file itself was fsynced \
                     (fsynced so far: {synced:?}): {}\n{text}",
                    c.raw
                );
                last_link.insert(dir.clone(), i);
            }
            if synced.contains(&src) {
                synced.insert(dst);
            }
        }
    }
    assert!(!last_link.is_empty(), "nothing linked into a new/:\n{text}");
    for (dir, &linked) in &last_link {
        let fsync = calls[linked + 1..exit].iter().any(|c| {
            matches!(c.name.as_str(), "fsync" | "fdatasync")
                && c.ok()
                && c.fd_paths().first() == Some(dir)
        });
        assert!(
            fsync,
            "{dir} was not fsynced between its link and exit 0:\n{text}"
        );
    }
    last_link.into_keys().collect()
}

#[test]
fn single_delivery_fsyncs_the_file_before_the_link_and_new_after_it() {
    let s = Site::new();
    s.account("alice@example.com");
    // The first delivery makes the Maildir; the traced one is steady state.
    assert_eq!(s.deliver("alice@example.com", FROM, MSG).code, Some(0));
    let (r, calls, text) = traced(&s, "alice@example.com", &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let dirs = assert_durable_order(&calls, &text);
    let new = s.maildir(ALICE).join("new");
    assert_eq!(dirs, [new.display().to_string()], "{text}");
    assert_eq!(s.files(ALICE, "new").len(), 2);
    // The first delivery too, which also makes the directories.
    s.account("carol@example.com");
    let (r, calls, text) = traced(&s, "carol@example.com", &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let dirs = assert_durable_order(&calls, &text);
    let new = s.maildir("example.com/carol/Maildir/").join("new");
    assert_eq!(dirs, [new.display().to_string()], "{text}");
}

#[test]
fn fan_out_fsyncs_every_new_directory_before_exit() {
    let s = Site::new();
    let who = ["alice", "bob", "carol"];
    for w in who {
        s.account(&format!("{w}@example.com"));
        assert_eq!(
            s.deliver(&format!("{w}@example.com"), FROM, MSG).code,
            Some(0)
        );
    }
    s.ctl_ok(&[
        "alias",
        "add",
        "team@example.com",
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
    ]);
    let (r, calls, text) = traced(&s, "team@example.com", &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let dirs = assert_durable_order(&calls, &text);
    let mut want: Vec<String> = who
        .iter()
        .map(|w| {
            s.maildir(&format!("example.com/{w}/Maildir/"))
                .join("new")
                .display()
                .to_string()
        })
        .collect();
    want.sort();
    assert_eq!(dirs, want, "{text}");
    for w in who {
        assert_eq!(
            s.files(&format!("example.com/{w}/Maildir/"), "new").len(),
            2
        );
    }
}

/// Every file and directory under `dir` with its size, mode, owner and
/// mtime: a write, a create-and-remove, a chmod all show.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, u32, u32, i64, i64)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let m = fs::symlink_metadata(&d).unwrap();
        out.insert(
            d.clone(),
            (m.len(), m.mode(), m.uid(), m.mtime(), m.mtime_nsec()),
        );
        if m.is_dir() {
            for e in fs::read_dir(&d).unwrap() {
                todo.push(e.unwrap().path());
            }
        }
    }
    out
}

/// A complete Maildir (with one message) at `dir`, owned by the user
/// vdeliver runs as, so that only the symlink rule can keep mail out.
fn make_outside_maildir(dir: &Path) {
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    fs::write(dir.join("new/1.M1P1.host,S=5"), b"old\n\n").unwrap();
}

/// Replace whatever is at `link` by a symlink to `target`, owned by the
/// mail user.
fn symlink_at(link: &Path, target: &Path) {
    if let Ok(m) = fs::symlink_metadata(link) {
        if m.is_dir() {
            fs::remove_dir_all(link).unwrap();
        } else {
            fs::remove_file(link).unwrap();
        }
    }
    fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[test]
fn symlink_to_an_existing_maildir_outside_the_root_is_refused() {
    let s = Site::new();
    s.ctl_ok(&["domain", "add", "example.net"]);
    s.account("alice@example.com");
    s.account("bob@example.net");
    let outside = temp_dir_for_unpriv();
    // Domain level: example.com -> <outside>/example.com, which holds
    // alice/Maildir/ complete.
    let out_domain = outside.path().join("example.com");
    make_outside_maildir(&out_domain.join("alice/Maildir"));
    symlink_at(&s.root.join("example.com"), &out_domain);
    // Maildir level: example.net/bob/Maildir -> <outside>/bob-Maildir.
    let out_md = outside.path().join("bob-Maildir");
    make_outside_maildir(&out_md);
    symlink_at(&s.root.join("example.net/bob/Maildir"), &out_md);
    chown_for_unpriv(&s.root);
    chown_for_unpriv(outside.path());

    let before = snapshot(outside.path());
    for to in ["alice@example.com", "bob@example.net"] {
        // openat2 (traced to prove it is the path taken), then the
        // O_NOFOLLOW walk that a kernel without openat2 gets.
        for (how, inject) in [
            ("openat2", None),
            ("walk fallback", Some("inject=openat2:error=ENOSYS")),
        ] {
            let mut extra = vec![];
            if let Some(i) = inject {
                extra = vec!["-e", i];
            }
            let (r, calls, text) = traced(&s, to, &extra);
            assert_eq!(r.code, Some(111), "{to}, {how}: {r:?}");
            assert!(r.stdout.ends_with("(#4.3.5)\n"), "{to}, {how}: {r:?}");
            assert_eq!(
                snapshot(outside.path()),
                before,
                "{to}, {how}: written outside the mail root"
            );
            let openat2: Vec<&Call> = calls.iter().filter(|c| c.name == "openat2").collect();
            assert!(
                !openat2.is_empty(),
                "{to}, {how}: openat2 never tried:\n{text}"
            );
            let injected = openat2.iter().any(|c| c.ret.contains("INJECTED"));
            assert_eq!(injected, inject.is_some(), "{to}, {how}:\n{text}");
        }
    }
    // And no trace run changed anything either (the plain runs too).
    for to in ["alice@example.com", "bob@example.net"] {
        let r = s.deliver(to, FROM, MSG);
        assert_eq!(r.code, Some(111), "{to}: {r:?}");
    }
    assert_eq!(snapshot(outside.path()), before, "written outside the root");
}

fn set_message_quota(s: &Site, local: &str, n: i64) {
    s.db.execute(&format!(
        "UPDATE accounts SET quota_messages = {n} WHERE local_part = '{local}'"
    ));
}

#[test]
fn quota_is_charged_only_after_the_link_into_new() {
    let s = Site::with_config("[quota]\nwarn_percent = 0\n");
    s.account("alice@example.com");
    set_message_quota(&s, "alice", 100);
    assert_eq!(s.deliver("alice@example.com", FROM, MSG).code, Some(0));
    let size_file = s.maildir(ALICE).join("maildirsize");
    let before = fs::read(&size_file).unwrap();

    // The order: the line goes into maildirsize after the link.
    let (r, calls, text) = traced(&s, "alice@example.com", &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let size_path = size_file.display().to_string();
    let new = s.maildir(ALICE).join("new").display().to_string();
    let link = index_of(&calls, |c| c.link().is_some_and(|(_, d, _)| d == new))
        .unwrap_or_else(|| panic!("no link into {new}:\n{text}"));
    let charges: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.name == "write" && c.fd_paths().first() == Some(&size_path))
        .map(|(i, _)| i)
        .collect();
    assert!(!charges.is_empty(), "maildirsize never charged:\n{text}");
    for i in charges {
        assert!(
            i > link,
            "maildirsize charged before the link into new/: {}\n{text}",
            calls[i].raw
        );
    }
    let after_ok = fs::read(&size_file).unwrap();
    assert!(after_ok.len() > before.len(), "not charged");

    // A link that fails: deferred, nothing visible, nothing charged.
    let new_before = s.files(ALICE, "new");
    let (r, _, text) = traced(&s, "alice@example.com", &["-e", "inject=linkat:error=EIO"]);
    assert!(
        text.contains("linkat(") && text.contains("(INJECTED)"),
        "{text}"
    );
    assert_eq!(r.code, Some(111), "{r:?}");
    assert_eq!(s.files(ALICE, "new"), new_before);
    assert!(
        s.files(ALICE, "tmp").is_empty(),
        "{:?}",
        s.files(ALICE, "tmp")
    );
    assert_eq!(
        String::from_utf8_lossy(&fs::read(&size_file).unwrap()),
        String::from_utf8_lossy(&after_ok),
        "maildirsize charged for a message that was never linked"
    );
}

/// Whether `/proc/locks` shows `pid` blocked waiting for a lock on inode
/// `ino`.
fn waits_for_lock(pid: u32, ino: u64) -> bool {
    let locks = fs::read_to_string("/proc/locks").unwrap();
    locks.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // "1: -> FLOCK  ADVISORY  WRITE 1234 fe:00:5507864 0 EOF"
        f.get(1) == Some(&"->")
            && f.get(5) == Some(&pid.to_string().as_str())
            && f.get(6).and_then(|d| d.rsplit(':').next()) == Some(ino.to_string().as_str())
    })
}

/// The `maildirsize` lock, held by the test (an exclusive `flock`, as
/// vdeliver takes it through fs4): a delivery waits for it — it links
/// nothing while the lock is held — and, once it is released, decides on
/// what the holder left: the mailbox filled meanwhile, so the message is
/// refused. A lock that does not exclude fails here every time: the
/// delivery goes through while the test holds the lock.
#[test]
fn delivery_waits_for_the_maildirsize_lock_and_sees_what_changed() {
    let s = Site::with_config("[quota]\nwarn_percent = 0\n");
    s.account("alice@example.com");
    set_message_quota(&s, "alice", 2);
    assert_eq!(s.deliver("alice@example.com", FROM, MSG).code, Some(0));
    let size_file = s.maildir(ALICE).join("maildirsize");
    let held = fs::OpenOptions::new()
        .read(true)
        .append(true)
        .open(&size_file)
        .unwrap();
    fs4::FileExt::lock(&held).unwrap();
    let ino = held.metadata().unwrap().ino();

    let mut child = s
        .command(&qmail_env("alice@example.com", FROM), &[])
        .stdin(s.message_file(MSG))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let t = Instant::now();
    loop {
        assert_eq!(
            s.files(ALICE, "new").len(),
            1,
            "delivered while the test held the maildirsize lock"
        );
        if let Some(st) = child.try_wait().unwrap() {
            panic!("the delivery ended ({st}) while the test held the maildirsize lock");
        }
        if waits_for_lock(pid, ino) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the delivery never waited for the maildirsize lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Still waiting a while later, nothing visible.
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "stopped waiting");
    assert_eq!(
        s.files(ALICE, "new").len(),
        1,
        "linked while the lock was held"
    );
    assert!(waits_for_lock(pid, ino));

    // Fill the mailbox under the lock, the Maildir++ way: a message in
    // new/ and its line in maildirsize.
    let other = b"Subject: other\n\nfills the box\n";
    let name = format!("1700000000.M1P1.test,S={}", other.len());
    let p = s.maildir(ALICE).join("new").join(name);
    fs::write(&p, other).unwrap();
    chown_for_unpriv(&p);
    use std::io::Write;
    (&held)
        .write_all(format!("{} 1\n", other.len()).as_bytes())
        .unwrap();
    drop(held);

    let out = child.wait_with_output().unwrap();
    let r: Run = out.into();
    assert_eq!(r.code, Some(100), "{r:?}");
    assert!(r.stdout.ends_with("(#5.2.2)\n"), "{r:?}");
    assert_eq!(s.files(ALICE, "new").len(), 2);
    assert!(
        s.files(ALICE, "tmp").is_empty(),
        "{:?}",
        s.files(ALICE, "tmp")
    );
}
