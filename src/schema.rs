//! The database schema: numbered migrations under `migrations/`, compiled
//! in, applied by `vmailctl migrate`.
//!
//! Each migration runs in its own transaction together with the row that
//! records it in `vdeliver_schema`, under an advisory lock, so concurrent or
//! interrupted runs leave the schema at a recorded version and running
//! `migrate` again is a no-op.

/// (version, name, SQL), in order. Versions are 1, 2, 3, … without gaps.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/0001_initial.sql")),
    (
        2,
        "lookup function",
        include_str!("../migrations/0002_lookup_function.sql"),
    ),
    (3, "routes", include_str!("../migrations/0003_routes.sql")),
    (4, "junk", include_str!("../migrations/0004_junk.sql")),
    (
        5,
        "accounts",
        include_str!("../migrations/0005_accounts.sql"),
    ),
];

/// The version a fully migrated database is at.
pub fn current_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Arbitrary key for `pg_advisory_xact_lock`, so two `migrate` runs
/// serialise.
pub const LOCK_KEY: i64 = 0x7664_656c_6976_6572; // "vdeliver"

#[cfg(test)]
mod tests {
    #[test]
    fn versions_are_dense() {
        for (i, m) in super::MIGRATIONS.iter().enumerate() {
            assert_eq!(m.0 as usize, i + 1);
        }
    }
}
