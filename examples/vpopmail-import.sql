-- Import a vpopmail site into vdeliver's schema, in one transaction.
--
-- Before: `vmailctl migrate`, and copy vpopmail's `vpopmail` and `valias`
-- tables (the single-table layout, --disable-many-domains; with the
-- per-domain layout, UNION the domain tables into one `vpopmail` table
-- with a pw_domain column first) into the same database, e.g. with
-- pg_dump/psql from vpopmail's PostgreSQL, or mysqldump converted.
-- Then, with mail.root = vpopmail's domains directory:
--
--   psql mail -c "SET vdeliver.vpopmail_root = '/home/vpopmail/domains/'" \
--             -f examples/vpopmail-import.sql
--   (or put the SET at the top of this file)
--
-- What maps to what:
--   vpopmail.pw_domain        -> domains.name
--   vpopmail.pw_name          -> accounts.local_part
--   vpopmail.pw_passwd        -> accounts.password_hash as {CRYPT}<crypt string>
--                                (Dovecot verifies $1$, $5$, $6$ and DES crypt)
--   vpopmail.pw_dir           -> accounts.maildir = pw_dir/Maildir/ less the root
--   vpopmail.pw_shell         -> quota: NOQUOTA -> 0 (unlimited), "<n>S[,<m>C]" -> bytes, messages
--   vpopmail.pw_gid & 0x10    -> (BOUNCE_MAIL) accounts.active = false; every
--                                other pw_gid bit (NO_POP, NO_IMAP, V_USER*...)
--                                is a login or admin flag: not imported
--   valias "&addr" or "addr"  -> aliases.destination
--   valias "<the account's own Maildir>/" -> the address itself (keep a copy)
--   valias "|program", other paths -> not imported; listed at the end
-- Catch-alls live in each domain's .qmail-default (vdelivermail '' ADDRESS):
-- add them with `vmailctl catchall add`, or keep the same argument on the
-- vdeliver line.
--
-- A vpopmail built without --enable-valias has no valias table (its aliases
-- are .qmail-NAME files in the domain directories); create an empty one
-- first:
--
--   CREATE TABLE valias (alias text, domain text, valias_line text);
--
-- No .qmail file is read: not the .qmail (or .qmail-EXT) in a user's
-- directory, where vdelivermail found forwards and autoresponders, nor a
-- domain's .qmail-NAME files. vdeliver does not read them either. Convert
-- them by hand before switching (the README, "Migrating from vpopmail",
-- step 2, lists them and says what each kind of line becomes).

BEGIN;

CREATE TEMP TABLE vp ON COMMIT DROP AS
SELECT lower(pw_domain) AS domain,
       lower(pw_name) AS local,
       nullif(pw_passwd, '') AS passwd,
       rtrim(pw_dir, '/') AS dir,
       coalesce(pw_shell, '') AS shell,
       coalesce(pw_gid, 0) AS flags
  FROM vpopmail;

INSERT INTO domains (name, note)
SELECT DISTINCT domain, 'imported from vpopmail' FROM vp
ON CONFLICT (name) DO NOTHING;

INSERT INTO accounts (domain_id, local_part, password_hash, maildir,
                      quota_bytes, quota_messages, active)
SELECT d.id,
       vp.local,
       '{CRYPT}' || vp.passwd,
       -- A pw_dir outside the root keeps its leading '/', which the
       -- accounts CHECK refuses: the import stops rather than guess.
       CASE WHEN left(vp.dir || '/', length(current_setting('vdeliver.vpopmail_root')))
                 = current_setting('vdeliver.vpopmail_root')
            THEN substr(vp.dir || '/', length(current_setting('vdeliver.vpopmail_root')) + 1)
            ELSE vp.dir || '/'
       END || 'Maildir/',
       CASE WHEN vp.shell = 'NOQUOTA' THEN 0
            ELSE substring(vp.shell FROM '(\d+)S')::bigint END,
       CASE WHEN vp.shell = 'NOQUOTA' THEN 0
            ELSE substring(vp.shell FROM '(\d+)C')::bigint END,
       (vp.flags & 16) = 0   -- BOUNCE_MAIL is 0x10 in vpopmail.h
  FROM vp JOIN domains d ON d.name = vp.domain;

INSERT INTO aliases (domain_id, local_part, destination)
SELECT d.id, lower(va.alias),
       CASE WHEN va.valias_line LIKE '/%'
            THEN lower(va.alias) || '@' || d.name
            ELSE ltrim(va.valias_line, '&') END
  FROM valias va
  JOIN domains d ON d.name = lower(va.domain)
  LEFT JOIN vp ON vp.domain = d.name AND vp.local = lower(va.alias)
 WHERE va.valias_line ~ '^&?[^|/&][^@ ]*@[^@ ]+$'
    OR (va.valias_line LIKE '/%' AND vp.dir IS NOT NULL
        AND rtrim(va.valias_line, '/') = vp.dir || '/Maildir')
ON CONFLICT DO NOTHING;

-- What was not imported (programs, other paths): handle these by hand.
SELECT va.alias || '@' || va.domain AS alias, va.valias_line AS not_imported
  FROM valias va
  LEFT JOIN vp ON vp.domain = lower(va.domain) AND vp.local = lower(va.alias)
 WHERE NOT (va.valias_line ~ '^&?[^|/&][^@ ]*@[^@ ]+$'
            OR (va.valias_line LIKE '/%' AND vp.dir IS NOT NULL
                AND rtrim(va.valias_line, '/') = vp.dir || '/Maildir'));

COMMIT;
