//! Load generator for admins: N messages of a given size to M accounts
//! with C concurrent deliveries, through the real `vdeliver` binary and a
//! real database, one process per message as qmail-local runs it.
//!
//! ```text
//! cargo build --release --bins --examples
//! target/release/examples/load [--messages 2000] [--size 4k] [--accounts 10]
//!     [--concurrency 1] [--pgbouncer] [--compare-minimal] [--vdeliver PATH]
//!     [--config /etc/vdeliver/config.toml --to a@example.com,b@example.com]
//! ```
//!
//! Without `--config` it starts a throwaway PostgreSQL (and, with
//! `--pgbouncer`, Debian's PgBouncer in transaction mode in front of it),
//! creates `example.com` with M accounts and delivers into a temp mail
//! root. With `--config` it uses your installation and delivers to the
//! existing accounts named by `--to` (it creates nothing).
//!
//! Reports deliveries/s, p50/p99/max latency and the peak RSS of one
//! delivery. `--compare-minimal` runs `examples/minimal_deliver.rs` — the
//! same syscalls and the same single query over the same connection path,
//! and nothing else — the same number of times, so the two can be read as
//! a ratio measured in one run. When run as root the deliveries run as
//! `nobody` through `setpriv`, both vdeliver and the reference alike.

// The test harness's throwaway PostgreSQL and PgBouncer, reused (not its
// `site` module, which needs the test binaries' paths).
#[allow(dead_code)]
#[path = "../tests/it/common/pg.rs"]
mod pg;
#[allow(dead_code)]
#[path = "../tests/it/common/pgbouncer.rs"]
mod pgbouncer;
#[allow(dead_code)]
#[path = "../tests/it/common/throwaway.rs"]
mod throwaway;
#[allow(dead_code)]
#[path = "../tests/it/common/unpriv.rs"]
mod unpriv;
#[allow(dead_code)]
#[path = "../tests/it/common/util.rs"]
mod util;
#[allow(unused_imports)]
use util::*;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{exit, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use throwaway::{qmail_env, runnable_copy, Setup};
use unpriv::{command_as_unprivileged, temp_dir_for_unpriv};

struct Opts {
    messages: usize,
    size: usize,
    accounts: usize,
    concurrency: usize,
    pgbouncer: bool,
    compare_minimal: bool,
    config: Option<PathBuf>,
    to: Vec<String>,
    /// Another vdeliver binary to measure (a static build, say).
    vdeliver: Option<PathBuf>,
}

fn usage(why: &str) -> ! {
    eprintln!("load: {why}");
    eprintln!(
        "usage: load [--messages N] [--size BYTES|Nk|Nm] [--accounts M] [--concurrency C] \
         [--pgbouncer] [--compare-minimal] [--vdeliver PATH] [--config PATH --to ADDR,ADDR...]"
    );
    exit(2)
}

fn parse_size(s: &str) -> Option<usize> {
    let (num, mult) = match s.to_ascii_lowercase() {
        x if x.ends_with('k') => (x[..x.len() - 1].to_string(), 1024),
        x if x.ends_with('m') => (x[..x.len() - 1].to_string(), 1024 * 1024),
        x => (x, 1),
    };
    num.parse::<usize>().ok().map(|n| n * mult)
}

fn opts() -> Opts {
    let mut o = Opts {
        messages: 2000,
        size: 4096,
        accounts: 10,
        concurrency: 1,
        pgbouncer: false,
        compare_minimal: false,
        config: None,
        to: Vec::new(),
        vdeliver: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--messages" => o.messages = val().parse().unwrap_or_else(|_| usage("bad --messages")),
            "--size" => o.size = parse_size(&val()).unwrap_or_else(|| usage("bad --size")),
            "--accounts" => o.accounts = val().parse().unwrap_or_else(|_| usage("bad --accounts")),
            "--concurrency" => {
                o.concurrency = val().parse().unwrap_or_else(|_| usage("bad --concurrency"))
            }
            "--pgbouncer" => o.pgbouncer = true,
            "--compare-minimal" => o.compare_minimal = true,
            "--config" => o.config = Some(PathBuf::from(val())),
            "--to" => o.to = val().split(',').map(str::to_string).collect(),
            "--vdeliver" => o.vdeliver = Some(PathBuf::from(val())),
            "--bench" => {} // cargo bench passes this; ignore
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    if o.messages == 0 || o.accounts == 0 || o.concurrency == 0 {
        usage("counts must be at least 1");
    }
    if o.config.is_some() && o.to.is_empty() {
        usage("--config needs --to with existing accounts");
    }
    o
}

/// Where the product binaries are: next to this example's directory.
fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("examples dir");
    for cand in [
        dir.join(name),
        dir.parent().map(|p| p.join(name)).unwrap_or_default(),
    ] {
        if cand.is_file() {
            return cand;
        }
    }
    eprintln!(
        "load: {name} not found next to {}; run `cargo build --release --bins --examples`",
        exe.display()
    );
    exit(1)
}

fn installed(o: &Opts, path: &Path) -> Setup {
    let cfg = vdeliver::config::load(path).unwrap_or_else(|e| {
        eprintln!("load: {e}");
        exit(1)
    });
    let dir = temp_dir_for_unpriv();
    let bin_dir = dir.path().to_path_buf();
    Setup {
        pg: None,
        bouncer: None,
        db: None,
        dir,
        config: path.to_path_buf(),
        url: cfg.database.url.clone(),
        root: cfg.mail.root.clone(),
        recipients: o.to.clone(),
        bin_dir,
    }
}

#[derive(Default)]
struct Result {
    wall: Duration,
    latencies: Vec<Duration>,
    failures: usize,
    first_failure: Option<String>,
}

impl Result {
    /// Fold another block's figures in.
    fn add(&mut self, other: Result) {
        self.wall += other.wall;
        self.latencies.extend(other.latencies);
        self.latencies.sort();
        self.failures += other.failures;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
    }
}

type Cmd = Arc<dyn Fn(usize) -> std::process::Command + Send + Sync>;

/// Run `n` deliveries with `c` workers; `cmd` builds the command for the
/// i-th one.
fn run(label: &str, n: usize, c: usize, msg_file: &Path, cmd: Cmd) -> Result {
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let lat = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let fails = Arc::new(Mutex::new((0usize, None::<String>)));
    let start = Instant::now();
    let workers: Vec<_> = (0..c)
        .map(|_| {
            let (next, done, lat, fails, cmd) = (
                next.clone(),
                done.clone(),
                lat.clone(),
                fails.clone(),
                cmd.clone(),
            );
            let msg_file = msg_file.to_path_buf();
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let stdin = fs::File::open(&msg_file).expect("message file");
                let t = Instant::now();
                let out = cmd(i)
                    .stdin(stdin)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .output();
                let d = t.elapsed();
                match out {
                    Ok(o) if o.status.success() => lat.lock().unwrap().push(d),
                    Ok(o) => {
                        let mut f = fails.lock().unwrap();
                        f.0 += 1;
                        f.1.get_or_insert_with(|| {
                            String::from_utf8_lossy(&o.stdout).trim().to_string()
                        });
                    }
                    Err(e) => {
                        let mut f = fails.lock().unwrap();
                        f.0 += 1;
                        f.1.get_or_insert_with(|| e.to_string());
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            })
        })
        .collect();
    // Progress bar on stderr.
    while done.load(Ordering::Relaxed) < n && workers.iter().any(|w| !w.is_finished()) {
        let d = done.load(Ordering::Relaxed);
        let width = 40;
        let filled = d * width / n;
        eprint!(
            "\r{label:>10} [{}{}] {d}/{n}",
            "#".repeat(filled),
            " ".repeat(width - filled)
        );
        let _ = std::io::stderr().flush();
        std::thread::sleep(Duration::from_millis(100));
    }
    for w in workers {
        w.join().expect("worker");
    }
    let wall = start.elapsed();
    eprintln!("\r{label:>10} [{}] {n}/{n}", "#".repeat(40));
    let mut latencies = std::mem::take(&mut *lat.lock().unwrap());
    latencies.sort();
    let f = fails.lock().unwrap();
    Result {
        wall,
        latencies,
        failures: f.0,
        first_failure: f.1.clone(),
    }
}

fn pct(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn report(label: &str, r: &Result) {
    let ok = r.latencies.len();
    println!(
        "{label:<16} {ok:>6} ok {:>4} failed  {:>8.1} deliveries/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        r.failures,
        ok as f64 / r.wall.as_secs_f64(),
        pct(&r.latencies, 0.5).as_secs_f64() * 1e3,
        pct(&r.latencies, 0.99).as_secs_f64() * 1e3,
        r.latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    if let Some(f) = &r.first_failure {
        println!("{:<16} first failure: {f}", "");
    }
}

fn main() {
    // Hidden mode: run one delivery and print its peak RSS, so that the
    // children of the set-up (initdb and friends) do not count.
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 6 && args[1] == "--rss-probe" {
        let stdin = fs::File::open(&args[4]).expect("message file");
        let status = command_as_unprivileged(Path::new(&args[2]))
            .env_clear()
            .envs(qmail_env(&args[5], "load@example.org"))
            .env("VDELIVER_CONFIG", &args[3])
            .stdin(stdin)
            .stdout(Stdio::null())
            .status()
            .expect("run vdeliver");
        println!("{} {}", status.code().unwrap_or(-1), peak_child_rss_kib());
        return;
    }
    let o = opts();
    let setup = match &o.config {
        Some(p) => installed(&o, p),
        None => Setup::throwaway(o.accounts, o.pgbouncer),
    };
    let vdeliver_src = o.vdeliver.clone().unwrap_or_else(|| sibling("vdeliver"));
    let vdeliver_bin = runnable_copy(&vdeliver_src, &setup.bin_dir);
    let msg_file = setup.bin_dir.join("message");
    let mut msg = b"From: load@example.org\nTo: alice@example.com\nSubject: load test\n\n".to_vec();
    while msg.len() < o.size {
        msg.extend_from_slice(
            b"The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrstuvwxyz\n",
        );
    }
    msg.truncate(o.size.max(64));
    fs::write(&msg_file, &msg).unwrap();
    fs::set_permissions(&msg_file, fs::Permissions::from_mode(0o644)).unwrap();

    println!(
        "{} messages of {} bytes to {} accounts, {} at a time{}",
        o.messages,
        msg.len(),
        setup.recipients.len(),
        o.concurrency,
        if o.pgbouncer {
            ", through PgBouncer (transaction pooling)"
        } else {
            ""
        }
    );

    let recipients = setup.recipients.clone();
    let config = setup.config.clone();
    let bin = vdeliver_bin.clone();
    let vdeliver_cmd: Cmd = Arc::new(move |i| {
        let to = &recipients[i % recipients.len()];
        let mut c = command_as_unprivileged(&bin);
        c.env_clear()
            .envs(qmail_env(to, "load@example.org"))
            .env("VDELIVER_CONFIG", &config);
        c
    });
    // The reference writes into alice's Maildir, which vdeliver makes on
    // its first delivery.
    let minimal_cmd: Option<Cmd> = o.compare_minimal.then(|| {
        let maildir = setup.root.join("example.com/alice/Maildir");
        let min_bin = runnable_copy(&sibling("minimal_deliver"), &setup.bin_dir);
        let url = setup.url.clone();
        Arc::new(move |_| {
            let mut c = command_as_unprivileged(&min_bin);
            c.env_clear().arg(&maildir).arg(&url);
            c
        }) as Cmd
    });

    // With --compare-minimal the two alternate in blocks of 100, so that a
    // change in the machine's load touches both alike.
    let block = if o.compare_minimal { 100 } else { o.messages };
    let mut vd = Result::default();
    let mut min = Result::default();
    let mut done = 0;
    while done < o.messages {
        let n = block.min(o.messages - done);
        vd.add(run(
            "vdeliver",
            n,
            o.concurrency,
            &msg_file,
            vdeliver_cmd.clone(),
        ));
        if let Some(cmd) = &minimal_cmd {
            min.add(run("minimal", n, o.concurrency, &msg_file, cmd.clone()));
        }
        done += n;
    }
    report("vdeliver", &vd);
    let probe = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--rss-probe")
        .arg(&vdeliver_bin)
        .arg(&setup.config)
        .arg(&msg_file)
        .arg(&setup.recipients[0])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let rss_vdeliver = probe.split(' ').nth(1).unwrap_or("?").to_string();
    if o.compare_minimal {
        report("minimal+query", &min);
        let per = |r: &Result| r.wall.as_secs_f64() / r.latencies.len().max(1) as f64;
        println!(
            "vdeliver / minimal (wall time per delivery, same run): {:.3}",
            per(&vd) / per(&min)
        );
    }
    println!("peak RSS of one vdeliver process: {rss_vdeliver} KiB");
    if vd.failures > 0 {
        exit(1);
    }
}

/// The largest maximum RSS among the children waited for so far.
fn peak_child_rss_kib() -> i64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map(|u| u.max_rss())
        .unwrap_or(0)
}
