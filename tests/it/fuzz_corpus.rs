//! Replays the fuzz corpora (`fuzz/corpus/<target>/`, and
//! `fuzz/artifacts/<target>/` when a fuzzing run left crashes there) through
//! the same property checks the fuzz targets run, so every input the fuzzer
//! or a person ever found interesting stays checked by a plain `cargo test`,
//! without a fuzzer or a nightly toolchain.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use vdeliver::fuzzing;

/// The files in `dir`, sorted; none when it does not exist.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Run `check` on every corpus (and artifact) file of `target`; fail naming
/// every file whose check panicked.
fn replay(target: &str, check: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = files_in(&fuzz.join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target}/ is missing or empty: the replay would prove nothing"
    );
    let artifacts = files_in(&fuzz.join("artifacts").join(target));
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&artifacts) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(
                path.strip_prefix(&fuzz)
                    .unwrap_or(path)
                    .display()
                    .to_string(),
            );
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs fail their property (the panic messages are above): {failed:#?}",
        failed.len(),
        corpus.len() + artifacts.len()
    );
}

#[test]
fn header_scan_corpus() {
    replay("header_scan", fuzzing::header_scan);
}

#[test]
fn recipient_corpus() {
    replay("recipient", fuzzing::recipient);
}

#[test]
fn names_corpus() {
    replay("names", fuzzing::names);
}

#[test]
fn config_corpus() {
    replay("config", fuzzing::config);
}

#[test]
fn outcome_line_corpus() {
    replay("outcome_line", fuzzing::outcome_line);
}

#[test]
fn maildirsize_corpus() {
    replay("maildirsize", fuzzing::maildirsize);
}

#[test]
fn destination_corpus() {
    replay("destination", fuzzing::destination);
}

#[test]
fn sieve_compile_corpus() {
    replay("sieve_compile", fuzzing::sieve_compile);
}

#[test]
fn sieve_run_corpus() {
    replay("sieve_run", fuzzing::sieve_run);
}
