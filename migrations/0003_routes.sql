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
    IF pg_trigger_depth() < 2 THEN
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
