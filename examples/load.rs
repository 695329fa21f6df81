//! Load generator for admins: N messages of a given size to random
//! addresses of a realistic site, C at a time, through the real `vdeliver`
//! binary and a real database, one process per message as qmail-local runs
//! it.
//!
//! ```text
//! cargo build --release --bins --examples
//! target/release/examples/load [--messages 2000] [--size 4k]
//!     [--accounts 10000] [--per-domain 100] [--aliases ACCOUNTS/100]
//!     [--case plain|extension|alias|catchall] [--concurrency 1]
//!     [--pgbouncer] [--compare-minimal] [--block 100] [--seed 1]
//!     [--typical] [--sieve-rules N [--compare-sieve]] [--compare-binary PATH]
//!     [--vdeliver PATH]
//!     [--config /etc/vdeliver/config.toml --to a@example.com,b@example.com]
//! ```
//!
//! Without `--config` it starts a throwaway PostgreSQL (and, with
//! `--pgbouncer`, Debian's PgBouncer in transaction mode in front of it;
//! both sides then go through it), makes the site described in
//! `tests/it/common/throwaway.rs` (M accounts in domains of 100, 1 %
//! aliases, catch-alls, alias domains, relocated rows; server-side, then
//! ANALYZE) and delivers into a temp mail root, each message to a random
//! address of the `--case`: an account (`plain`), an extension of one
//! (`user7-ext42@`), an alias with one account as destination, or an
//! unknown address of a domain with a catch-all. With `--config` it uses
//! your installation and delivers to the existing accounts named by `--to`
//! (it creates nothing; `--case plain` only).
//!
//! Reports deliveries/s, p50/p99/max latency and the peak RSS of one
//! delivery. `--compare-minimal` also runs the floor,
//! `examples/minimal_deliver.rs` (connect, one plain indexed lookup of the
//! final account's Maildir and limits with its own SQL, the durable write;
//! nothing of vdeliver), the same number of times, to its own random
//! addresses of the same case, alternating blocks of `--block` deliveries
//! and swapping which side goes first every block; it prints the ratio
//! vdeliver / floor of the wall time per delivery as the median and the
//! min–max over the block pairs, and the peak RSS of one delivery of each.
//! When run as root both sides run as `nobody` through `setpriv`, alike.
//!
//! Sieve: `--typical` sends the typical 4 KB message of
//! `vdeliver::sieve::testgen` (three `Received`, `DKIM-Signature`,
//! From/To/Cc, `multipart/alternative` with text and HTML) instead of the
//! filler of `--size`. `--sieve-rules N` (N > 0; implies `--typical`, and
//! refuses `--size` and `--config`) gives every account delivered to an
//! active script of N rules in the shape Roundcube's managesieve plugin
//! writes, stored and activated as `vmailctl sieve put` and `activate` do
//! (`<home>/sieve/roundcube.sieve`, `<home>/.dovecot.sieve` -> it), none
//! of which matches the message: it still goes to INBOX by the implicit
//! keep, after every rule was evaluated. `--compare-sieve` (with
//! `--sieve-rules`) alternates, as `--compare-minimal` does, blocks of
//! deliveries to accounts with that script and blocks to other accounts
//! without one (the same binary and message; both sides' accounts get the
//! script stored, and before each block the `.dovecot.sieve` links of the
//! block's accounts are switched on or off by renaming them, outside the
//! timed part), and prints the ratio with / without of the wall time per
//! delivery. After the run, no account's home may hold a
//! `.dovecot.sieve.log` (a script that failed), and a message matching
//! the set's discard rule (with at least 5 rules) must be discarded, which
//! shows the scripts ran.
//!
//! `--compare-binary PATH` alternates blocks the same way between this
//! vdeliver and another build of it (e.g. one from before a change, to
//! measure what a delivery without a script pays for the script lookup),
//! each to its own random addresses, and prints the ratio this / other.

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
use throwaway::{qmail_env, runnable_copy, Case, Rng, Setup, Site, Target};
use unpriv::{command_as_unprivileged, temp_dir_for_unpriv};

struct Opts {
    messages: usize,
    size: usize,
    accounts: usize,
    per_domain: usize,
    aliases: Option<usize>,
    case: Case,
    concurrency: usize,
    pgbouncer: bool,
    compare_minimal: bool,
    block: usize,
    /// The typical 4 KB message instead of filler.
    typical: bool,
    /// Rules in each account's active script; 0: no script.
    sieve_rules: usize,
    compare_sieve: bool,
    /// Another vdeliver build to alternate with.
    compare_binary: Option<PathBuf>,
    size_given: bool,
    seed: u64,
    config: Option<PathBuf>,
    to: Vec<String>,
    /// Another vdeliver binary to measure (a static build, say).
    vdeliver: Option<PathBuf>,
}

fn usage(why: &str) -> ! {
    eprintln!("load: {why}");
    eprintln!(
        "usage: load [--messages N] [--size BYTES|Nk|Nm] [--accounts M] [--per-domain P] \
         [--aliases A] [--case plain|extension|alias|catchall] [--concurrency C] [--pgbouncer] \
         [--compare-minimal] [--block B] [--seed S] [--typical] \
         [--sieve-rules N [--compare-sieve]] [--compare-binary PATH] [--vdeliver PATH] \
         [--config PATH --to ADDR,ADDR...]"
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
        accounts: 10_000,
        per_domain: 100,
        aliases: None,
        case: Case::Plain,
        concurrency: 1,
        pgbouncer: false,
        compare_minimal: false,
        block: 100,
        typical: false,
        sieve_rules: 0,
        compare_sieve: false,
        compare_binary: None,
        size_given: false,
        seed: 1,
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
        let num = |v: String, what: &str| -> usize {
            v.parse().unwrap_or_else(|_| usage(&format!("bad {what}")))
        };
        match a.as_str() {
            "--messages" => o.messages = num(val(), "--messages"),
            "--size" => {
                o.size = parse_size(&val()).unwrap_or_else(|| usage("bad --size"));
                o.size_given = true;
            }
            "--accounts" => o.accounts = num(val(), "--accounts"),
            "--per-domain" => o.per_domain = num(val(), "--per-domain"),
            "--aliases" => o.aliases = Some(num(val(), "--aliases")),
            "--case" => {
                o.case = Case::parse(&val())
                    .unwrap_or_else(|| usage("--case is one of plain, extension, alias, catchall"))
            }
            "--concurrency" => o.concurrency = num(val(), "--concurrency"),
            "--block" => o.block = num(val(), "--block"),
            "--seed" => o.seed = num(val(), "--seed") as u64,
            "--pgbouncer" => o.pgbouncer = true,
            "--compare-minimal" => o.compare_minimal = true,
            "--typical" => o.typical = true,
            "--sieve-rules" => o.sieve_rules = num(val(), "--sieve-rules"),
            "--compare-sieve" => o.compare_sieve = true,
            "--compare-binary" => o.compare_binary = Some(PathBuf::from(val())),
            "--config" => o.config = Some(PathBuf::from(val())),
            "--to" => o.to = val().split(',').map(str::to_string).collect(),
            "--vdeliver" => o.vdeliver = Some(PathBuf::from(val())),
            "--bench" => {} // cargo bench passes this; ignore
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    if o.messages == 0
        || o.accounts == 0
        || o.per_domain == 0
        || o.concurrency == 0
        || o.block == 0
        || o.aliases == Some(0)
    {
        usage("counts must be at least 1");
    }
    if o.config.is_some() && o.to.is_empty() {
        usage("--config needs --to with existing accounts");
    }
    if o.sieve_rules > 0 {
        if o.config.is_some() {
            usage("--sieve-rules writes scripts into the accounts' homes; not with --config");
        }
        if o.size_given {
            usage("--sieve-rules sends the typical 4 KB message (--typical); not with --size");
        }
        o.typical = true;
    }
    if o.typical && o.size_given {
        usage("--typical sends the typical 4 KB message; not with --size");
    }
    if o.compare_sieve && o.sieve_rules == 0 {
        usage("--compare-sieve needs --sieve-rules N (N > 0)");
    }
    if [
        o.compare_sieve,
        o.compare_minimal,
        o.compare_binary.is_some(),
    ]
    .iter()
    .filter(|&&c| c)
    .count()
        > 1
    {
        usage("--compare-sieve, --compare-minimal and --compare-binary are separate runs");
    }
    if o.config.is_some() && o.case != Case::Plain {
        usage("with --config the addresses of --to are delivered to as they are (--case plain)");
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
        site: None,
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

/// Run deliveries `first..first + n` with `c` workers; `cmd` builds the
/// command for the i-th one.
fn run(label: &str, first: usize, n: usize, c: usize, msg_file: &Path, cmd: Cmd) -> Result {
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
                let out = cmd(first + i)
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

/// A command's environment as qmail-local gives it, plus vdeliver's config.
fn delivery_env(c: &mut std::process::Command, to: &str, config: &Path) {
    c.env_clear()
        .envs(qmail_env(to, "load@example.org"))
        .env("VDELIVER_CONFIG", config);
}

/// The peak RSS of one run of `cmd` (with `args`) in KiB, measured in a
/// child of a fresh process so that the set-up's children do not count.
fn rss_of(program: &Path, args: &[&std::ffi::OsStr], to: &str, cfg: &Path, msg: &Path) -> String {
    let mut c = std::process::Command::new(std::env::current_exe().unwrap());
    c.arg("--rss-probe").arg(msg).arg(program).args(args);
    delivery_env(&mut c, to, cfg);
    c.output()
        .ok()
        .and_then(|o| {
            let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
            let (code, kib) = out.split_once(' ')?;
            (code == "0").then(|| kib.to_string())
        })
        .unwrap_or_else(|| "?".into())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn main() {
    // Hidden mode: run one delivery (`--rss-probe MSG PROGRAM ARGS...`,
    // environment inherited) and print its exit code and peak RSS.
    let args: Vec<String> = std::env::args().collect();
    if args.len() >= 4 && args[1] == "--rss-probe" {
        let stdin = fs::File::open(&args[2]).expect("message file");
        let status = command_as_unprivileged(Path::new(&args[3]))
            .args(&args[4..])
            .stdin(stdin)
            .stdout(Stdio::null())
            .status()
            .expect("run the delivery");
        println!("{} {}", status.code().unwrap_or(-1), peak_child_rss_kib());
        return;
    }
    let o = opts();
    let made = Instant::now();
    let setup = match &o.config {
        Some(p) => installed(&o, p),
        None => Setup::with_site(
            Site {
                accounts: o.accounts,
                per_domain: o.per_domain,
                aliases: o.aliases.unwrap_or((o.accounts / 100).max(1)),
            },
            o.pgbouncer,
        ),
    };
    let made = made.elapsed();
    let vdeliver_src = o.vdeliver.clone().unwrap_or_else(|| sibling("vdeliver"));
    let vdeliver_bin = runnable_copy(&vdeliver_src, &setup.bin_dir);
    let msg_file = setup.bin_dir.join("message");
    let msg = if o.typical {
        vdeliver::sieve::testgen::message(None).0
    } else {
        let mut msg =
            b"From: load@example.org\nTo: load@example.com\nSubject: load test\n\n".to_vec();
        while msg.len() < o.size {
            msg.extend_from_slice(
                b"The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrstuvwxyz\n",
            );
        }
        msg.truncate(o.size.max(64));
        msg
    };
    fs::write(&msg_file, &msg).unwrap();
    fs::set_permissions(&msg_file, fs::Permissions::from_mode(0o644)).unwrap();

    // Where each delivery goes: random addresses of the case across the
    // whole site, drawn independently for the two sides (neither warms the
    // other's index pages or Maildirs). Their Maildirs are made beforehand,
    // so neither side's figures include a first delivery's mkdirs.
    let targets = |rng: &mut Rng| -> Vec<Target> {
        match &setup.site {
            Some(site) => (0..o.messages).map(|_| site.pick(o.case, rng)).collect(),
            None => (0..o.messages)
                .map(|i| {
                    let to = &setup.recipients[i % setup.recipients.len()];
                    let (l, d) = to.rsplit_once('@').unwrap_or((to, ""));
                    Target {
                        address: to.clone(),
                        account: (d.to_ascii_lowercase(), l.to_ascii_lowercase()),
                        maildir: String::new(),
                    }
                })
                .collect(),
        }
    };
    let compare = o.compare_minimal || o.compare_sieve || o.compare_binary.is_some();
    let mut rng = Rng(o.seed);
    let vd_targets = Arc::new(targets(&mut rng));
    // The other side's: the floor's, or those of the deliveries without a
    // script.
    let other_targets = Arc::new(if compare {
        targets(&mut rng)
    } else {
        Vec::new()
    });
    if let Some(site) = &setup.site {
        for t in vd_targets.iter().chain(other_targets.iter()) {
            setup.precreate_maildir(&t.maildir);
        }
        println!(
            "site: {} accounts in {} domains ({} a domain), {} aliases, {} catch-alls, \
             alias and relocated rows; made and analyzed in {:.1} s",
            site.accounts,
            site.domains(),
            site.per_domain,
            site.aliases,
            (0..site.domains())
                .filter(|&j| site.has_catchall(j))
                .count(),
            made.as_secs_f64()
        );
    }
    // Sieve: every account either side delivers to gets the script (each
    // once), as the mail user; with --compare-sieve the links are switched
    // per block below.
    if o.sieve_rules > 0 {
        let script = vdeliver::sieve::testgen::roundcube_script(o.sieve_rules);
        let t0 = Instant::now();
        let mut done = std::collections::HashSet::new();
        for t in vd_targets.iter().chain(other_targets.iter()) {
            if done.insert(t.maildir.clone()) {
                setup.install_script(&t.address, &t.maildir, script.as_bytes());
            }
        }
        println!(
            "sieve: a {}-rule Roundcube filter set ({} bytes) active in {} accounts' homes, \
             stored in {:.1} s; no rule matches the message",
            o.sieve_rules,
            script.len(),
            done.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    println!(
        "{} messages of {} bytes{}, case {}, to random addresses, {} at a time{}",
        o.messages,
        msg.len(),
        if o.typical { " (typical)" } else { "" },
        o.case.name(),
        o.concurrency,
        if o.pgbouncer {
            ", through PgBouncer (transaction pooling)"
        } else {
            ""
        }
    );

    // The other build, copied under its own name beside this one.
    let other_bin = o.compare_binary.as_ref().map(|p| {
        let dir = setup.bin_dir.join("other");
        fs::create_dir_all(&dir).expect("mkdir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        runnable_copy(p, &dir)
    });
    let vdeliver_for = |bin: &Path, targets: &Arc<Vec<Target>>| -> Cmd {
        let config = setup.config.clone();
        let bin = bin.to_path_buf();
        let tv = targets.clone();
        Arc::new(move |i| {
            let mut c = command_as_unprivileged(&bin);
            delivery_env(&mut c, &tv[i].address, &config);
            c
        })
    };
    let vdeliver_cmd = vdeliver_for(&vdeliver_bin, &vd_targets);
    // The floor: the same environment, and the final account named on its
    // command line (for an alias or a catch-all it looks up the account
    // the message ends in, with its one plain statement).
    let min_bin = o
        .compare_minimal
        .then(|| runnable_copy(&sibling("minimal_deliver"), &setup.bin_dir));
    let other_cmd: Option<Cmd> = match &min_bin {
        Some(min_bin) => {
            let min_bin = min_bin.clone();
            let (root, url, config) = (setup.root.clone(), setup.url.clone(), setup.config.clone());
            let tm = other_targets.clone();
            Some(Arc::new(move |i: usize| {
                let t = &tm[i];
                let mut c = command_as_unprivileged(&min_bin);
                c.arg(&root).arg(&url).arg(&t.account.0).arg(&t.account.1);
                delivery_env(&mut c, &t.address, &config);
                c
            }) as Cmd)
        }
        None if o.compare_sieve => Some(vdeliver_for(&vdeliver_bin, &other_targets)),
        None => other_bin.as_ref().map(|b| vdeliver_for(b, &other_targets)),
    };
    let (vd_label, other_label) = if o.compare_sieve {
        ("script", "no script")
    } else if o.compare_binary.is_some() {
        ("vdeliver", "other")
    } else if o.sieve_rules > 0 {
        ("script", "")
    } else {
        ("vdeliver", "floor")
    };
    // With --compare-sieve, the links of a block's accounts are switched
    // before it runs (an account may be on both sides).
    let switch = |targets: &[Target], on: bool| {
        if o.compare_sieve {
            for t in targets {
                setup.switch_script(&t.maildir, on);
            }
        }
    };

    // With --compare-minimal or --compare-sieve the two sides alternate in
    // blocks (of 100), the order swapped every block, so that a change in
    // the machine's load touches both alike; each pair of blocks gives one
    // ratio.
    let block = if compare { o.block } else { o.messages };
    let mut vd = Result::default();
    let mut other = Result::default();
    let mut ratios = Vec::new();
    let mut done = 0;
    let mut b = 0;
    while done < o.messages {
        let n = block.min(o.messages - done);
        let run_vd = || {
            switch(&vd_targets[done..done + n], true);
            run(
                vd_label,
                done,
                n,
                o.concurrency,
                &msg_file,
                vdeliver_cmd.clone(),
            )
        };
        match &other_cmd {
            Some(cmd) => {
                let run_other = || {
                    switch(&other_targets[done..done + n], false);
                    run(other_label, done, n, o.concurrency, &msg_file, cmd.clone())
                };
                let (v, m) = if b % 2 == 0 {
                    let v = run_vd();
                    (v, run_other())
                } else {
                    let m = run_other();
                    (run_vd(), m)
                };
                let per = |r: &Result| r.wall.as_secs_f64() / r.latencies.len().max(1) as f64;
                ratios.push(per(&v) / per(&m));
                vd.add(v);
                other.add(m);
            }
            None => vd.add(run_vd()),
        }
        done += n;
        b += 1;
    }
    report(vd_label, &vd);
    let t0 = &vd_targets[0];
    switch(std::slice::from_ref(t0), true);
    let rss_vdeliver = rss_of(&vdeliver_bin, &[], &t0.address, &setup.config, &msg_file);
    if other_cmd.is_some() {
        report(other_label, &other);
        let per = |r: &Result| r.wall.as_secs_f64() / r.latencies.len().max(1) as f64;
        let t = &other_targets[0];
        let rss_other = match &min_bin {
            Some(min_bin) => {
                let fargs: Vec<&std::ffi::OsStr> = vec![
                    setup.root.as_os_str(),
                    setup.url.as_ref(),
                    t.account.0.as_ref(),
                    t.account.1.as_ref(),
                ];
                rss_of(min_bin, &fargs, &t.address, &setup.config, &msg_file)
            }
            None => {
                switch(std::slice::from_ref(t), false);
                let bin = other_bin.as_ref().unwrap_or(&vdeliver_bin);
                rss_of(bin, &[], &t.address, &setup.config, &msg_file)
            }
        };
        let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let what = if o.compare_sieve {
            format!(
                "with a {}-rule script / without (wall time per delivery",
                o.sieve_rules
            )
        } else if let Some(p) = &o.compare_binary {
            format!("vdeliver / {} (wall time per delivery", p.display())
        } else {
            "vdeliver / floor (wall time per delivery".to_string()
        };
        println!(
            "{what}, {} alternating blocks of {}): \
             median {:.3}, min {:.3}, max {:.3}; whole run {:.3}",
            ratios.len(),
            block,
            median(&mut ratios),
            lo,
            hi,
            per(&vd) / per(&other)
        );
        println!(
            "peak RSS of one delivery: {vd_label} {rss_vdeliver} KiB, \
             {other_label} {rss_other} KiB"
        );
    } else {
        println!("peak RSS of one vdeliver process: {rss_vdeliver} KiB");
    }
    // Every message must be in the Maildir of the account it was meant to
    // end in (the RSS probes add one each to the first targets').
    if setup.site.is_some() {
        let mut want: std::collections::HashMap<&str, usize> = Default::default();
        for t in vd_targets.iter().chain(other_targets.iter()) {
            *want.entry(&t.maildir).or_default() += 1;
        }
        *want.entry(&vd_targets[0].maildir).or_default() += 1;
        if let Some(t) = other_targets.first() {
            *want.entry(&t.maildir).or_default() += 1;
        }
        let wrong = want
            .iter()
            .filter(|(m, n)| {
                fs::read_dir(setup.root.join(m).join("new")).map_or(0, |d| d.count()) != **n
            })
            .count();
        if wrong > 0 {
            println!("{wrong} Maildirs do not hold the messages sent to them");
            exit(1);
        }
        // Proof that the scripts ran: a message matching the set's discard
        // rule (rule 4, by envelope sender) is discarded.
        if o.sieve_rules > 4 {
            let (raw, env) = vdeliver::sieve::testgen::message(Some(4));
            let probe = setup.bin_dir.join("message-rule4");
            fs::write(&probe, raw).unwrap();
            fs::set_permissions(&probe, fs::Permissions::from_mode(0o644)).unwrap();
            let t = &vd_targets[0];
            switch(std::slice::from_ref(t), true);
            let mut c = command_as_unprivileged(&vdeliver_bin);
            c.env_clear()
                .envs(qmail_env(&t.address, &env.envelope_from))
                .env("VDELIVER_CONFIG", &setup.config);
            let out = c
                .stdin(fs::File::open(&probe).unwrap())
                .output()
                .expect("run vdeliver");
            let line = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() || !line.contains("discard") {
                println!("the script did not run: rule 4's message gave {line:?}");
                exit(1);
            }
            println!(
                "sieve: a message matching rule 4 was discarded ({})",
                line.trim()
            );
        }
        // A script that failed leaves its error in the home's log.
        if o.sieve_rules > 0 {
            let failed: Vec<(&str, String)> = want
                .keys()
                .filter_map(|m| setup.sieve_log(m).map(|l| (*m, l)))
                .collect();
            if let Some((m, log)) = failed.first() {
                println!(
                    "{} homes hold a Sieve error log; {m}: {}",
                    failed.len(),
                    log.trim()
                );
                exit(1);
            }
        }
    }
    if vd.failures > 0 || other.failures > 0 {
        exit(1);
    }
}

/// The largest maximum RSS among the children waited for so far.
fn peak_child_rss_kib() -> i64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map(|u| u.max_rss())
        .unwrap_or(0)
}
