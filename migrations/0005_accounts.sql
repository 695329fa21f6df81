-- vdeliver schema, version 5: who an account belongs to, and which
-- services it may log in to.
--
-- accounts.real_name, accounts.note: free text for the postmaster
-- (`vmailctl account add/set --name … --note …`), shown by `account show`
-- and `account list`; '' when not given, like domains.note.
--
-- accounts.imap, accounts.pop3, accounts.smtp, accounts.sieve: whether the
-- account may log in to IMAP, POP3, SMTP AUTH (Dovecot's "smtp" and
-- "submission" services) and ManageSieve. `vmailctl account services
-- ADDRESS --imap off …` sets them. Only the Dovecot passdb query
-- (examples/dovecot/dovecot-sql.conf.ext) reads them: delivery does not,
-- and neither the delivery statement nor vdeliver_route()/vdeliver_lookup()
-- change. An account with every service off still receives mail.
--
-- Every column is NOT NULL with a constant default, which PostgreSQL 11
-- and later add without rewriting the table, whatever its size: every
-- account already there may log in everywhere, as before.

ALTER TABLE accounts
    ADD COLUMN real_name text NOT NULL DEFAULT '',
    ADD COLUMN note      text NOT NULL DEFAULT '',
    ADD COLUMN imap      boolean NOT NULL DEFAULT true,
    ADD COLUMN pop3      boolean NOT NULL DEFAULT true,
    ADD COLUMN smtp      boolean NOT NULL DEFAULT true,
    ADD COLUMN sieve     boolean NOT NULL DEFAULT true;

COMMENT ON COLUMN accounts.real_name IS 'The account holder''s name, for the postmaster';
COMMENT ON COLUMN accounts.note IS 'A free note for the postmaster';
COMMENT ON COLUMN accounts.imap IS 'May log in over IMAP (Dovecot service imap)';
COMMENT ON COLUMN accounts.pop3 IS 'May log in over POP3 (Dovecot service pop3)';
COMMENT ON COLUMN accounts.smtp IS 'May authenticate for SMTP (Dovecot services smtp, submission)';
COMMENT ON COLUMN accounts.sieve IS 'May log in over ManageSieve (Dovecot service sieve)';
