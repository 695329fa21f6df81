-- vdeliver schema, version 3: extensions, aliases and catch-all hits
-- answered without PL/pgSQL.
--
-- Version 2 answered a plain account from `domains` and `accounts` and
-- sent everything else to vdeliver_lookup(), a PL/pgSQL function. On a
-- fresh backend (every delivery over a direct connection) that costs
-- loading PL/pgSQL, compiling the function and planning its two big
-- statements: about 5 ms of server time, half again the cost of the
-- whole delivery. Most of what reaches it is simple: an extension of an
-- account, an alias to one or two local accounts, a catch-all to a local
-- account. Those are now answered by vdeliver_route(), a SQL function
-- reading three relations (domains, accounts and the trigger-kept
-- vdeliver_routes below), one index probe each per pair. It is a SQL
-- function, and one the planner cannot inline (it is STRICT), so the
-- delivery statement's plan stays close to the plain account's: the
-- function's statement is parsed and planned only when it is called.
-- What it cannot answer whole it hands on, in the same statement, to
-- vdeliver_lookup() as before. One round trip still, nothing written, no
-- session state.

-- The catch-all destinations split for the lookup: for each literal one
-- (no '%'; an '@' after the first character), its domain and its local
-- part, folded ASCII A-Z as vdeliver folds them (translate, never
-- lower(): lower() depends on the ctype).
CREATE FUNCTION vdeliver_targets(dests text[], OUT domains text[], OUT locals text[])
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(
               translate(right(d, strpos(reverse(d), '@') - 1),
                         'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') ORDER BY i), '{}'),
           coalesce(array_agg(
               translate(left(d, length(d) - strpos(reverse(d), '@')),
                         'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') ORDER BY i), '{}')
      FROM unnest(dests) WITH ORDINALITY AS x(d, i)
     WHERE strpos(d, '%') = 0 AND strpos(reverse(d), '@') BETWEEN 1 AND length(d) - 1
$$;

ALTER TABLE domains
    ADD COLUMN vdeliver_catchall_domains text[] NOT NULL DEFAULT '{}',
    ADD COLUMN vdeliver_catchall_locals text[] NOT NULL DEFAULT '{}';

CREATE OR REPLACE FUNCTION vdeliver_domains_catchalls() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.vdeliver_catchalls := coalesce(
        (SELECT array_agg(destination ORDER BY destination)
           FROM catchalls WHERE domain_id = NEW.id), '{}');
    SELECT t.domains, t.locals
      INTO NEW.vdeliver_catchall_domains, NEW.vdeliver_catchall_locals
      FROM vdeliver_targets(NEW.vdeliver_catchalls) t;
    RETURN NEW;
END $$;

-- vdeliver_routes: one row per (domain, local part) that has aliases or a
-- relocated row, nothing else: `aliases` their destinations as written,
-- sorted ('{}': none), `relocated` the new address (NULL: none), and the
-- literal alias destinations split as above. Only the triggers on
-- `aliases` and `relocated` write it: they rewrite the row of every pair
-- they change, and every column is recomputed from those two tables by
-- the BEFORE trigger below, whatever the writing statement says; a row
-- with nothing behind it is not stored. A missing row would read as "no
-- aliases" and misroute mail, so a write from anywhere else (an admin
-- cleaning up what looks like a cache) is refused with a message saying
-- what to change instead.
CREATE TABLE vdeliver_routes (
    domain_id       bigint NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
    local_part      text NOT NULL,
    aliases         text[] NOT NULL,
    relocated       text,
    target_domains  text[] NOT NULL,
    target_locals   text[] NOT NULL,
    PRIMARY KEY (domain_id, local_part)
);

CREATE FUNCTION vdeliver_routes_compute() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.aliases := coalesce(
        (SELECT array_agg(destination ORDER BY destination) FROM aliases
          WHERE domain_id = NEW.domain_id AND local_part = NEW.local_part), '{}');
    NEW.relocated := (SELECT new_address FROM relocated
                       WHERE domain_id = NEW.domain_id AND local_part = NEW.local_part);
    IF cardinality(NEW.aliases) = 0 AND NOT EXISTS (
           SELECT 1 FROM relocated
            WHERE domain_id = NEW.domain_id AND local_part = NEW.local_part) THEN
        RETURN NULL;
    END IF;
    SELECT t.domains, t.locals INTO NEW.target_domains, NEW.target_locals
      FROM vdeliver_targets(NEW.aliases) t;
    RETURN NEW;
END $$;
CREATE TRIGGER routes_recompute BEFORE INSERT OR UPDATE ON vdeliver_routes
    FOR EACH ROW EXECUTE FUNCTION vdeliver_routes_compute();

-- Rewrite the row of one pair. The caller holds its domain's row lock
-- (vdeliver_domain_lock), so two transactions changing the same pair at
-- once are ordered, and this runs on a snapshot taken after the lock: it
-- sees the other's committed rows. The join on `domains` skips a domain
-- being deleted (its aliases go with it, by cascade).
CREATE FUNCTION vdeliver_route_refresh(dom bigint, loc text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM vdeliver_routes WHERE domain_id = dom AND local_part = loc;
    INSERT INTO vdeliver_routes (domain_id, local_part, aliases, target_domains, target_locals)
    SELECT id, loc, '{}', '{}', '{}' FROM domains WHERE id = dom;
END $$;

CREATE OR REPLACE FUNCTION vdeliver_aliases_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM vdeliver_domain_lock(OLD.domain_id);
        UPDATE accounts SET vdeliver_aliased = false
         WHERE domain_id = OLD.domain_id AND local_part = OLD.local_part;
        PERFORM vdeliver_route_refresh(OLD.domain_id, OLD.local_part);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM vdeliver_domain_lock(NEW.domain_id);
        UPDATE accounts SET vdeliver_aliased = true
         WHERE domain_id = NEW.domain_id AND local_part = NEW.local_part;
        PERFORM vdeliver_route_refresh(NEW.domain_id, NEW.local_part);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION vdeliver_relocated_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM vdeliver_domain_lock(OLD.domain_id);
        PERFORM vdeliver_route_refresh(OLD.domain_id, OLD.local_part);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM vdeliver_domain_lock(NEW.domain_id);
        PERFORM vdeliver_route_refresh(NEW.domain_id, NEW.local_part);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER relocated_changed AFTER INSERT OR UPDATE OR DELETE ON relocated
    FOR EACH ROW EXECUTE FUNCTION vdeliver_relocated_changed();

-- The copies for the data already there.
UPDATE domains SET vdeliver_catchalls = '{}';
INSERT INTO vdeliver_routes (domain_id, local_part, aliases, target_domains, target_locals)
SELECT domain_id, local_part, '{}', '{}', '{}'
  FROM (SELECT domain_id, local_part FROM aliases
        UNION
        SELECT domain_id, local_part FROM relocated) k;

-- From here on, only the triggers write vdeliver_routes (a cascade from
-- a deleted domain runs inside one too). The guard fires before
-- routes_recompute (triggers fire in name order), so a write by hand is
-- refused rather than silently dropped.
CREATE FUNCTION vdeliver_routes_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF pg_trigger_depth() < 2
       AND current_setting('vdeliver.resync', true) IS DISTINCT FROM 'on' THEN
        RAISE EXCEPTION 'vdeliver_routes is kept by triggers from aliases and relocated'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'change aliases or relocated (vmailctl alias, vmailctl relocated) instead';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE TRIGGER routes_guard BEFORE INSERT OR UPDATE OR DELETE ON vdeliver_routes
    FOR EACH ROW EXECUTE FUNCTION vdeliver_routes_guard();
CREATE TRIGGER routes_guard_truncate BEFORE TRUNCATE ON vdeliver_routes
    FOR EACH STATEMENT EXECUTE FUNCTION vdeliver_routes_guard();

-- Drift: the copies disagree with the tables they copy only when the
-- triggers did not run (a load with session_replication_role = replica,
-- pg_restore --disable-triggers, ALTER TABLE … DISABLE TRIGGER).
-- vdeliver_drift() counts the rows in error: accounts whose
-- vdeliver_aliased is wrong, domains whose catch-all copies are wrong,
-- and addresses whose vdeliver_routes row is missing, stale or wrong.
-- `vmailctl check` reports it; vdeliver_resync(), which `vmailctl
-- migrate` runs, rewrites exactly those rows and returns how many.
CREATE FUNCTION vdeliver_drift_accounts() RETURNS SETOF accounts
LANGUAGE sql STABLE AS $$
    SELECT * FROM accounts a
     WHERE a.vdeliver_aliased IS DISTINCT FROM EXISTS (
           SELECT 1 FROM aliases al
            WHERE al.domain_id = a.domain_id AND al.local_part = a.local_part)
$$;
CREATE FUNCTION vdeliver_drift_domains() RETURNS SETOF domains
LANGUAGE sql STABLE AS $$
    SELECT * FROM domains d
     WHERE d.vdeliver_catchalls IS DISTINCT FROM coalesce(
           (SELECT array_agg(destination ORDER BY destination)
              FROM catchalls c WHERE c.domain_id = d.id), '{}')
        OR d.vdeliver_catchall_domains
           IS DISTINCT FROM (vdeliver_targets(d.vdeliver_catchalls)).domains
        OR d.vdeliver_catchall_locals
           IS DISTINCT FROM (vdeliver_targets(d.vdeliver_catchalls)).locals
$$;
CREATE FUNCTION vdeliver_drift_routes(OUT domain_id bigint, OUT local_part text)
RETURNS SETOF record LANGUAGE sql STABLE AS $$
    SELECT coalesce(k.domain_id, r.domain_id), coalesce(k.local_part, r.local_part)
      FROM (SELECT al.domain_id, al.local_part FROM aliases al
            UNION SELECT x.domain_id, x.local_part FROM relocated x) k
      FULL JOIN vdeliver_routes r
        ON r.domain_id = k.domain_id AND r.local_part = k.local_part
     WHERE k.domain_id IS NULL OR r.domain_id IS NULL
        OR r.aliases IS DISTINCT FROM coalesce(
           (SELECT array_agg(destination ORDER BY destination) FROM aliases a
             WHERE a.domain_id = r.domain_id AND a.local_part = r.local_part), '{}')
        OR r.relocated IS DISTINCT FROM (
           SELECT new_address FROM relocated x
            WHERE x.domain_id = r.domain_id AND x.local_part = r.local_part)
        OR r.target_domains IS DISTINCT FROM (vdeliver_targets(r.aliases)).domains
        OR r.target_locals IS DISTINCT FROM (vdeliver_targets(r.aliases)).locals
$$;
CREATE FUNCTION vdeliver_drift() RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT (SELECT count(*) FROM vdeliver_drift_accounts())
         + (SELECT count(*) FROM vdeliver_drift_domains())
         + (SELECT count(*) FROM vdeliver_drift_routes())
$$;
CREATE FUNCTION vdeliver_resync() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    fixed bigint := 0;
BEGIN
    -- The BEFORE triggers recompute whatever these statements write.
    UPDATE accounts SET vdeliver_aliased = NOT vdeliver_aliased
     WHERE id IN (SELECT id FROM vdeliver_drift_accounts());
    GET DIAGNOSTICS n = ROW_COUNT;
    fixed := fixed + n;
    UPDATE domains SET vdeliver_catchalls = '{}'
     WHERE id IN (SELECT id FROM vdeliver_drift_domains());
    GET DIAGNOSTICS n = ROW_COUNT;
    fixed := fixed + n;
    PERFORM set_config('vdeliver.resync', 'on', true);
    CREATE TEMP TABLE vdeliver_resync_keys ON COMMIT DROP AS
        SELECT * FROM vdeliver_drift_routes();
    DELETE FROM vdeliver_routes r USING vdeliver_resync_keys k
     WHERE r.domain_id = k.domain_id AND r.local_part = k.local_part;
    INSERT INTO vdeliver_routes (domain_id, local_part, aliases, target_domains, target_locals)
    SELECT k.domain_id, k.local_part, '{}', '{}', '{}'
      FROM vdeliver_resync_keys k JOIN domains d ON d.id = k.domain_id;
    SELECT count(*) INTO n FROM vdeliver_resync_keys;
    fixed := fixed + n;
    DROP TABLE vdeliver_resync_keys;
    PERFORM set_config('vdeliver.resync', 'off', true);
    RETURN fixed;
END $$;

-- vdeliver_route(domains, local parts): for each pair asked, its facts,
-- and the facts of each pair its aliases' literal destinations name (or,
-- for a pair with neither an account nor aliases, its domain's
-- catch-alls'), one row per (pair, destination):
--   dom, loc, val, flag, qb, qm, dname, dactive, dcatchalls, dests, rel
--       the pair: its account's Maildir and active flag (NULL: no
--       account), the effective quotas (the account's, else the
--       domain's), its domain's name, active flag and catch-all
--       destinations (dname NULL: not a primary domain), its alias
--       destinations and relocated address (dests NULL: neither)
--   tdom, tloc, tval, tflag, tqb, tqm, tdname, tdactive, tdcatchalls
--       the destination pair, the same way (NULL: none)
--   tmore
--       the destination is not a plain account (no account, an alias of
--       its own: a chain, or not in a primary domain): its facts are in
--       the l columns instead
--   lkind, ldom, lloc, lval, lflag, lqb, lqm
--       vdeliver_lookup()'s rows, one per row here, for the pair when its
--       domain is not a primary domain (an alias domain, or unknown), or
--       for the destination when tmore: it follows chains to their end.
-- So the answer is whole in one statement, and PL/pgSQL is loaded only
-- when a chain, an alias domain or a remote destination needs it. An
-- account or relocated row with a NULL where the schema forbids one (a
-- constraint dropped by hand) goes to vdeliver_lookup() too: here it
-- would read as "no account" or "not relocated", there it is an error.
--
-- Every lookup is a LATERAL subquery the planner cannot flatten (OFFSET
-- 0), so each is an index probe per pair whatever the tables' sizes. The
-- function is STRICT, which keeps the planner from inlining it into the
-- calling statement (whose plan would then carry this one's for every
-- delivery), and lets that statement skip the call with a NULL argument.
ALTER FUNCTION vdeliver_lookup(text[], text[]) STRICT;

CREATE FUNCTION vdeliver_route(doms text[], locs text[])
RETURNS TABLE (dom text, loc text, val text, flag boolean, qb bigint, qm bigint,
               dname text, dactive boolean, dcatchalls text[], dests text[], rel text,
               tdom text, tloc text, tval text, tflag boolean, tqb bigint, tqm bigint,
               tdname text, tdactive boolean, tdcatchalls text[], tmore boolean,
               lkind text, ldom text, lloc text, lval text, lflag boolean, lqb bigint, lqm bigint)
LANGUAGE sql STABLE STRICT AS $$
SELECT p.dom, p.loc, a.maildir, a.active,
       coalesce(a.quota_bytes, m.quota_bytes), coalesce(a.quota_messages, m.quota_messages),
       m.name, m.active, m.vdeliver_catchalls, r.aliases, r.relocated,
       t.dom, t.loc, t.maildir, t.active, t.qb, t.qm, t.name, t.dactive, t.catchalls, t.more,
       l.kind, l.dom, l.loc, l.val, l.flag, l.qb, l.qm
  FROM unnest(doms, locs) AS p(dom, loc)
  LEFT JOIN LATERAL (
       SELECT m.id, m.name, m.active, m.vdeliver_catchalls, m.quota_bytes, m.quota_messages,
              m.vdeliver_catchall_domains, m.vdeliver_catchall_locals
         FROM domains m WHERE m.name = p.dom OFFSET 0) m ON true
  LEFT JOIN LATERAL (
       SELECT a.maildir, a.active, a.quota_bytes, a.quota_messages,
              a.maildir IS NULL OR a.active IS NULL AS broken
         FROM accounts a WHERE a.domain_id = m.id AND a.local_part = p.loc OFFSET 0) a ON true
  LEFT JOIN LATERAL (
       SELECT r.aliases, r.relocated, r.target_domains, r.target_locals,
              cardinality(r.aliases) = 0 AND r.relocated IS NULL AS broken
         FROM vdeliver_routes r WHERE r.domain_id = m.id AND r.local_part = p.loc OFFSET 0) r ON true
  LEFT JOIN LATERAL (
       SELECT t.dom, t.loc, x.name, x.active AS dactive, x.vdeliver_catchalls AS catchalls,
              y.maildir, y.active, coalesce(y.quota_bytes, x.quota_bytes) AS qb,
              coalesce(y.quota_messages, x.quota_messages) AS qm,
              x.name IS NULL OR y.maildir IS NULL OR y.active IS NULL
                  OR y.vdeliver_aliased AS more
         FROM unnest(coalesce(r.target_domains,
                              CASE WHEN a.maildir IS NULL THEN m.vdeliver_catchall_domains END),
                     coalesce(r.target_locals,
                              CASE WHEN a.maildir IS NULL THEN m.vdeliver_catchall_locals END))
              AS t(dom, loc)
         LEFT JOIN LATERAL (
              SELECT x.id, x.name, x.active, x.vdeliver_catchalls, x.quota_bytes, x.quota_messages
                FROM domains x WHERE x.name = t.dom OFFSET 0) x ON true
         LEFT JOIN LATERAL (
              SELECT y.maildir, y.active, y.quota_bytes, y.quota_messages, y.vdeliver_aliased
                FROM accounts y
               WHERE y.domain_id = x.id AND y.local_part = t.loc OFFSET 0) y ON true) t ON true
  LEFT JOIN LATERAL vdeliver_lookup(
       CASE WHEN m.name IS NULL OR a.broken OR r.broken THEN ARRAY[p.dom]
            WHEN t.more THEN ARRAY[t.dom] END,
       CASE WHEN m.name IS NULL OR a.broken OR r.broken THEN ARRAY[p.loc]
            WHEN t.more THEN ARRAY[t.loc] END) AS l ON true
$$;
