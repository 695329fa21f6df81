#!/usr/bin/env bash
# One real delivery, end to end, on a throwaway PostgreSQL:
#   vmailctl creates the schema, a domain and an account; a message goes
#   through vdeliver with the environment qmail-local gives; the stored file
#   is printed. Everything lives in a temp dir that is removed at the end.
# Usage: bash examples/demo.sh        (from the repository's top directory)
set -euo pipefail
cd "$(dirname "$0")/.."

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$pgbin" ] && ! command -v initdb >/dev/null; then
    echo "demo: installing PostgreSQL"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
    pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
PATH="${pgbin:+$pgbin:}$PATH"

cargo build --quiet --bins
# Copy the binaries where an unprivileged user can run them.
work=$(mktemp -d /tmp/vdeliver-demo.XXXXXX)
chmod 755 "$work"
cp "${CARGO_TARGET_DIR:-target}/debug/vdeliver" "${CARGO_TARGET_DIR:-target}/debug/vmailctl" "$work/"

# As root: PostgreSQL runs as `postgres`, vdeliver as `nobody` (it refuses
# root, as qmail-local would never run it so).
as_pg=() as_mail=()
if [ "$(id -u)" = 0 ]; then
    pg_user=$(id -u postgres >/dev/null 2>&1 && echo postgres || echo nobody)
    as_pg=(runuser -u "$pg_user" --)
    as_mail=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
fi

cleanup() {
    "${as_pg[@]}" pg_ctl -D "$work/pgdata" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

mkdir "$work/pgdata" "$work/sock" "$work/vmail"
[ "$(id -u)" = 0 ] && chown "$pg_user" "$work/pgdata" "$work/sock" && chown nobody "$work/vmail"
"${as_pg[@]}" initdb -A trust -U postgres --no-sync -D "$work/pgdata" >/dev/null
"${as_pg[@]}" pg_ctl -D "$work/pgdata" -w -l "$work/pgdata/server.log" \
    -o "-c listen_addresses= -c unix_socket_directories=$work/sock -c fsync=off" start >/dev/null
"${as_pg[@]}" createdb -h "$work/sock" -U postgres mail

cat > "$work/config.toml" <<TOML
[database]
url = "host=$work/sock dbname=mail user=postgres"
[mail]
root = "$work/vmail"
TOML
chmod 644 "$work/config.toml"
export VDELIVER_CONFIG="$work/config.toml"

show() { echo "+ vmailctl $*"; "$work/vmailctl" "$@"; }
show migrate
show domain add example.com
show account add alice@example.com

printf 'From: bob@remote.org\nTo: Alice@Example.COM\nSubject: hello\n\nHi Alice!\n' > "$work/msg"
echo "+ vdeliver < msg   (as qmail-local runs it for Alice@Example.COM from bob@remote.org)"
status=0
env -i PATH=/usr/bin:/bin USER=vmail HOME="$work/vmail" VDELIVER_CONFIG="$VDELIVER_CONFIG" \
    LOCAL=vmail-example.com-Alice HOST=Example.COM \
    RECIPIENT=vmail-example.com-Alice@Example.COM \
    SENDER=bob@remote.org NEWSENDER=bob@remote.org \
    EXT=example.com-Alice EXT2=Alice DEFAULT=example.com-Alice \
    DTLINE=$'Delivered-To: vmail-example.com-Alice@Example.COM\n' \
    RPLINE=$'Return-Path: <bob@remote.org>\n' \
    "${as_mail[@]}" "$work/vdeliver" < "$work/msg" || status=$?
echo "exit code: $status"
for f in "$work"/vmail/example.com/alice/Maildir/new/*; do
    echo "--- stored as ${f#"$work"/vmail/}"
    cat "$f"
done
exit "$status"
