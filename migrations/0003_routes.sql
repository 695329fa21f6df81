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
-- function, and one the planner cannot inline (it has a SET clause), so
-- the delivery statement's plan stays the plain account's: the function's
-- statement is parsed and planned only when it is reached. Anything it
-- cannot answer whole goes on, in the same statement, to
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

-- vdeliver_route(domains, local parts): the facts of each pair, and of
-- every pair its aliases' literal destinations name (or, for a pair with
-- no aliases, its domain's catch-alls'), one row of kind 'p' per pair:
--   dom, loc   the pair
--   val, flag  the account's Maildir and active flag (NULL: no account)
--   qb, qm     the effective quotas (the account's, else the domain's)
--   dname, dactive, dcatchalls   the domain: its name, active flag and
--              catch-all destinations (dname NULL: not a primary domain)
--   dests, rel the pair's alias destinations and relocated address
--              (dests NULL: neither)
-- When that is not the whole answer — a pair in a domain that is not a
-- primary domain (an alias domain, or remote), or a destination pair
-- that is not a plain account (no account, or aliases of its own: a
-- chain) — it returns vdeliver_lookup()'s rows instead, which follow the
-- chain to its end. So it does for an account or relocated row with a
-- NULL where the schema forbids one (a constraint dropped by hand): here
-- that would read as "no account" or "not relocated", there it is an
-- error.
--
-- Every lookup is a LATERAL subquery the planner cannot flatten (OFFSET
-- 0), so each is an index probe per pair whatever the tables' sizes.
-- The SET clause keeps the function from being inlined into the calling
-- statement (whose plan would then carry this one's for every delivery).
CREATE FUNCTION vdeliver_route(doms text[], locs text[])
RETURNS TABLE (kind text, dom text, loc text, val text, flag boolean, qb bigint, qm bigint,
               dname text, dactive boolean, dcatchalls text[], dests text[], rel text)
LANGUAGE sql STABLE SET plan_cache_mode = force_generic_plan AS $$
WITH k AS MATERIALIZED (
    SELECT p.lvl, p.dom, p.loc, a.maildir, a.active,
           coalesce(a.quota_bytes, m.quota_bytes) AS qb,
           coalesce(a.quota_messages, m.quota_messages) AS qm,
           m.name, m.active AS dactive, m.vdeliver_catchalls, r.aliases, r.relocated,
           a.broken OR r.broken AS broken
      FROM (SELECT 1 AS lvl, q.dom, q.loc FROM unnest(doms, locs) AS q(dom, loc)
            UNION ALL
            SELECT 2, t.dom, t.loc
              FROM unnest(doms, locs) AS q(dom, loc)
             CROSS JOIN LATERAL (
                   SELECT d.id, d.vdeliver_catchall_domains, d.vdeliver_catchall_locals
                     FROM domains d WHERE d.name = q.dom OFFSET 0) d
              LEFT JOIN LATERAL (
                   SELECT r.target_domains, r.target_locals FROM vdeliver_routes r
                    WHERE r.domain_id = d.id AND r.local_part = q.loc OFFSET 0) r ON true
             CROSS JOIN LATERAL unnest(coalesce(r.target_domains, d.vdeliver_catchall_domains),
                                       coalesce(r.target_locals, d.vdeliver_catchall_locals))
                   AS t(dom, loc)) p
      LEFT JOIN LATERAL (
           SELECT m.id, m.name, m.active, m.vdeliver_catchalls, m.quota_bytes, m.quota_messages
             FROM domains m WHERE m.name = p.dom OFFSET 0) m ON true
      LEFT JOIN LATERAL (
           SELECT a.maildir, a.active, a.quota_bytes, a.quota_messages,
                  a.maildir IS NULL OR a.active IS NULL AS broken
             FROM accounts a WHERE a.domain_id = m.id AND a.local_part = p.loc OFFSET 0) a ON true
      LEFT JOIN LATERAL (
           SELECT r.aliases, r.relocated,
                  cardinality(r.aliases) = 0 AND r.relocated IS NULL AS broken
             FROM vdeliver_routes r WHERE r.domain_id = m.id AND r.local_part = p.loc OFFSET 0) r ON true),
more AS MATERIALIZED (
    SELECT EXISTS (
        SELECT FROM k
         WHERE k.name IS NULL OR k.broken
            OR (k.lvl = 2 AND (k.maildir IS NULL OR k.aliases IS NOT NULL))) AS yes)
SELECT 'p'::text, k.dom, k.loc, k.maildir, k.active, k.qb, k.qm,
       k.name, k.dactive, k.vdeliver_catchalls, k.aliases, k.relocated
  FROM k, more WHERE NOT more.yes
UNION ALL
SELECT l.kind, l.dom, l.loc, l.val, l.flag, l.qb, l.qm, NULL, NULL, NULL, NULL, NULL
  FROM more, vdeliver_lookup(doms, locs) AS l WHERE more.yes
$$;
