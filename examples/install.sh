#!/usr/bin/env bash
# The README's installation ("Installation on Debian, from nothing"),
# verbatim, on this machine; then one delivery exactly as qmail-local makes
# it, and a check of the stored file.
#
# Usage, as root, from anywhere:  bash examples/install.sh
#
# It CHANGES THE SYSTEM, as the README's steps do: it installs Debian's
# postgresql and starts its cluster, creates the `vmail` user, the role and
# database `vmail`/`mail`, a pg_hba.conf line and a pg_ident.conf map,
# /var/vmail, /etc/vdeliver/config.toml, /usr/local/bin/{vdeliver,vmailctl},
# their manual pages and vmailctl's shell completion under /usr/local/share.
# Meant for a fresh (throwaway) machine; CI runs it (.ci/run). It can be run
# again: what a previous run made that the steps would find (the database
# `mail`, /var/vmail/example.com, /etc/vdeliver/config.toml) is removed
# first, and every other README step is idempotent.
# The test suite's own clusters are not touched: they are separate
# `initdb` directories with their own sockets and ports.
#
# How the README and this script cannot drift: the commands are not
# copied here. Every fenced ```sh block of the README that follows the line
# "<!-- examples/install.sh runs this block -->" is extracted and run, in
# order, in one bash (set -euo pipefail), as a postmaster would type them
# into one root shell from the top of the checkout. The script fails if the
# README has not exactly the expected number of marked blocks, or if a step
# the installation needs (useradd, the role, the database, the map,
# migrate, check, a domain, an account, .qmail-default) is no longer among
# them: removing a marker cannot silently shrink the test.
#
# What is NOT from the README, because the README presumes it:
# - qmail. Debian has no qmail package; when /var/qmail/bin/qmail-queue is
#   missing a stand-in is put there that queues nothing (exit 71, qmail's
#   "temporarily refused"), so `vmailctl check` finds an executable
#   qmail-queue. The delivery below is to a mailbox and never calls it.
# - Debian's package lists: `apt-get update` when postgresql is not
#   installed yet, so the README's `apt-get install` finds it.
# - qmail-local itself: the delivery is made the way qmail-local makes it
#   (below), running the line of the installed ~vmail/.qmail-default.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: FAIL: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run it as root (the README's steps are root's)"
export DEBIAN_FRONTEND=noninteractive

# --- The README's marked blocks -------------------------------------------
marker='<!-- examples/install.sh runs this block -->'
expected_blocks=5
steps=$(awk -v marker="$marker" '
    $0 == marker { want = 1; next }
    want == 1 && /^```sh[[:space:]]*$/ { want = 2; n++; printf "echo \"install.sh: === README block %d\"\n", n; next }
    want == 1 { printf "marker not followed by a ```sh block (line %d)\n", NR > "/dev/stderr"; exit 3 }
    want == 2 && /^```[[:space:]]*$/ { want = 0; next }
    want == 2 { print }
    END { if (want == 2) { print "unterminated block" > "/dev/stderr"; exit 3 } }
' README.md) || die "README.md: a marked block is malformed"
blocks=$(grep -c '^echo "install.sh: === README block' <<<"$steps" || true)
[ "$blocks" = "$expected_blocks" ] ||
    die "README.md has $blocks marked blocks, this script expects $expected_blocks (update both together)"
for need in 'cargo build --release' 'install -m 0755 target/release/vdeliver' 'apt-get install -y postgresql' \
    'CREATE ROLE vmail' 'CREATE DATABASE mail OWNER vmail' 'map=vmail' 'useradd ' \
    '/etc/vdeliver/config.toml' 'vmailctl migrate' 'vmailctl check' '/var/vmail/.qmail-default' \
    'vmailctl domain add example.com' 'vmailctl account add alice@example.com' \
    'vmailctl man vmailctl' 'vmailctl man vdeliver' '/usr/local/share/man/man8' \
    'vmailctl completions bash' 'vmailctl completions zsh' 'vmailctl completions fish'; do
    grep -qF -- "$need" <<<"$steps" || die "the README's marked blocks no longer contain: $need"
done

# --- What the README presumes ---------------------------------------------
if ! dpkg-query -W -f='${Status}' postgresql 2>/dev/null | grep -q 'ok installed'; then
    say "apt-get update (for the README's apt-get install)"
    apt-get update -qq
fi
if [ ! -e /var/qmail/bin/qmail-queue ]; then
    say "no qmail here: a stand-in /var/qmail/bin/qmail-queue that queues nothing (exit 71)"
    install -d -m 0755 /var/qmail /var/qmail/bin
    cat > /var/qmail/bin/qmail-queue.tmp <<'SH'
#!/bin/sh
# Stand-in put here by vdeliver's examples/install.sh: this machine has no
# qmail. It queues nothing; 71 is qmail-queue's "temporarily refused".
exit 71
SH
    chmod 0755 /var/qmail/bin/qmail-queue.tmp
    mv /var/qmail/bin/qmail-queue.tmp /var/qmail/bin/qmail-queue
fi
# What a previous run left (on a machine reused for CI the files survive
# but the cluster is stopped): its database `mail`, its Maildirs and its
# configuration go, so that every README step runs again for real against
# this checkout's code -- `migrate` from an empty database, `domain add` and
# `account add` on a fresh one, the example configuration as it is now.
# This is done with Debian's own tools, not with a vmailctl a previous run
# installed: that one may be older than this checkout, and it cannot reach
# a stopped cluster.
if dpkg-query -W -f='${Status}' postgresql 2>/dev/null | grep -q 'ok installed'; then
    service postgresql start >/dev/null || die "service postgresql start failed"
    if [ "$(cd / && runuser -u postgres -- psql -X -tAc "SELECT 1 FROM pg_database WHERE datname = 'mail'")" = 1 ]; then
        say "dropping the database mail left by a previous run"
        (cd / && runuser -u postgres -- dropdb --force mail)
    fi
fi
if [ -e /var/vmail/example.com ] || [ -e /etc/vdeliver/config.toml ]; then
    say "removing /var/vmail/example.com and /etc/vdeliver/config.toml left by a previous run"
    rm -rf /var/vmail/example.com /etc/vdeliver/config.toml
fi

# --- The README, verbatim -------------------------------------------------
say "running the README's installation blocks:"
printf '%s\n' "$steps" | sed -n '/^echo "install.sh: ===/!s/^/    /p'
bash -c "set -euo pipefail
$steps" || die "a README block failed (see above)"

# --- One delivery, as qmail-local makes it --------------------------------
# Mail from bob@remote.example to alice@example.com, with
# control/virtualdomains saying example.com:vmail-example.com: qmail-send
# hands it to local user vmail-example.com-alice, qmail-getpw finds user
# vmail with extension example.com-alice, and qmail-local (as vmail, its
# groups just vmail's, in vmail's home, with the environment qmail-start
# was given: PATH only) runs the one line of ~vmail/.qmail-default with
# /bin/sh -c, the message file on stdin and these variables set.
vmail_uid=$(id -u vmail)
line=$(cat /var/vmail/.qmail-default)
case "$line" in
'|'*) prog=${line#|} ;;
*) die "/var/vmail/.qmail-default is not one program line: $line" ;;
esac
work=$(mktemp -d /tmp/vdeliver-install.XXXXXX)
trap 'rm -rf "$work"' EXIT
id="install-$(date +%s)-$$@remote.example"
printf 'From: bob@remote.example\nTo: alice@example.com\nSubject: installed\nMessage-ID: <%s>\n\nIt works.\n' \
    "$id" > "$work/msg"
chmod 0644 "$work/msg"
say "delivering to alice@example.com as qmail-local would: sh -c '$prog'"
status=0
out=$(cd /var/vmail && env -i \
    PATH=/var/qmail/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    USER=vmail HOME=/var/vmail \
    LOCAL=vmail-example.com-alice HOST=example.com HOST2=example HOST3=example HOST4=example \
    RECIPIENT=vmail-example.com-alice@example.com \
    SENDER=bob@remote.example NEWSENDER=bob@remote.example \
    EXT=example.com-alice EXT2=alice EXT3= EXT4= DEFAULT=example.com-alice \
    DTLINE=$'Delivered-To: vmail-example.com-alice@example.com\n' \
    RPLINE=$'Return-Path: <bob@remote.example>\n' \
    UFLINE=$'From bob@remote.example Thu Jan  1 00:00:00 2026\n' \
    setpriv --reuid=vmail --regid=vmail --init-groups -- /bin/sh -c "$prog" < "$work/msg") || status=$?
say "vdeliver exit $status: $out"
[ "$status" = 0 ] || die "vdeliver exited $status"
[ "$out" = "delivered to example.com/alice/Maildir/" ] || die "vdeliver said: $out"

# --- The stored file -------------------------------------------------------
new=/var/vmail/example.com/alice/Maildir/new
mapfile -t files < <(find "$new" -mindepth 1 -maxdepth 1 -type f)
[ "${#files[@]}" = 1 ] || die "$new holds ${#files[@]} files, not 1"
f=${files[0]}
{ printf 'Return-Path: <bob@remote.example>\nDelivered-To: alice@example.com\n'; cat "$work/msg"; } > "$work/want"
cmp -s "$work/want" "$f" || { diff "$work/want" "$f" >&2 || true; die "$f is not the message as expected"; }
[ "$(stat -c '%u %a' "$f")" = "$vmail_uid 600" ] || die "$f: owner and mode $(stat -c '%U %a' "$f"), not vmail 600"
size=$(stat -c %s "$f")
case "$f" in *",S=$size") ;; *) die "$f: the name does not carry S=$size" ;; esac
[ -z "$(find /var/vmail/example.com/alice/Maildir/tmp -mindepth 1)" ] || die "tmp/ is not empty"
say "stored as ${f#/var/vmail/}:"
sed 's/^/    /' "$f"

# The map lets root and vmail in as the role vmail, and nobody else.
if (cd / && runuser -u nobody -- psql -X "host=/run/postgresql dbname=mail user=vmail" \
    -tAc 'SELECT 1' >/dev/null 2>&1); then
    die "the Unix user nobody logged in to PostgreSQL as vmail: the peer map lets too much in"
fi
say "ok: the Unix user nobody cannot log in as vmail"

# The manual pages and the completion scripts step 1 installed.
for page in vmailctl vdeliver; do
    f=/usr/local/share/man/man8/$page.8
    title=$(tr '[:lower:]' '[:upper:]' <<<"$page")
    grep -q "^\.TH $title 8 " "$f" || die "$f: not the manual page of $page"
done
grep -q '^\.SS "vmailctl alias add"$' /usr/local/share/man/man8/vmailctl.8 ||
    die "vmailctl.8 does not describe vmailctl alias add"
for f in /usr/local/share/bash-completion/completions/vmailctl \
    /usr/local/share/zsh/site-functions/_vmailctl \
    /usr/local/share/fish/vendor_completions.d/vmailctl.fish; do
    grep -q 'alias-domain' "$f" || die "$f: not vmailctl's completion"
done
bash -n /usr/local/share/bash-completion/completions/vmailctl || die "the bash completion does not parse"
say "ok: manual pages vmailctl(8), vdeliver(8) and completion for bash, zsh, fish installed"

# vdeliver's version is the one just built and installed.
want="vdeliver $(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
[ "$(/usr/local/bin/vdeliver --version)" = "$want" ] || die "vdeliver --version: not $want"
say "ok: the README's installation works as written"
