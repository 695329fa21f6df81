-- vdeliver schema, version 2: the delivery lookup, cheap for a plain account.
--
-- A delivery's first statement (db::FETCH) reads, for an address with a
-- single candidate (no extension delimiter in it), only `domains` and
-- `accounts`, as any SQL-backed delivery agent must: the account row says
-- whether an alias of the same address exists (aliases replace delivery
-- to the account), and the domain row carries its catch-all destinations,
-- so that one row is the whole answer. Both copies are kept by the
-- triggers below on every change, vmailctl's or direct SQL's: they are
-- recomputed from `aliases` and `catchalls`, never trusted from the
-- statement that writes them. Every other case calls vdeliver_lookup()
-- in the same statement (one round trip still).

ALTER TABLE domains ADD COLUMN vdeliver_catchalls text[] NOT NULL DEFAULT '{}';
ALTER TABLE accounts ADD COLUMN vdeliver_aliased boolean NOT NULL DEFAULT false;

-- domains.vdeliver_catchalls = the domain's catch-all destinations, sorted.
CREATE FUNCTION vdeliver_domains_catchalls() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.vdeliver_catchalls := coalesce(
        (SELECT array_agg(destination ORDER BY destination)
           FROM catchalls WHERE domain_id = NEW.id), '{}');
    RETURN NEW;
END $$;
CREATE TRIGGER domains_catchalls BEFORE INSERT OR UPDATE ON domains
    FOR EACH ROW EXECUTE FUNCTION vdeliver_domains_catchalls();

-- A change of catchalls touches its domain(s), whose trigger recomputes.
-- The domain's row lock orders concurrent changes; the recomputation runs
-- after it, on a fresh snapshot.
CREATE FUNCTION vdeliver_catchalls_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        UPDATE domains SET vdeliver_catchalls = '{}' WHERE id = OLD.domain_id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        UPDATE domains SET vdeliver_catchalls = '{}' WHERE id = NEW.domain_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER catchalls_changed AFTER INSERT OR UPDATE OR DELETE ON catchalls
    FOR EACH ROW EXECUTE FUNCTION vdeliver_catchalls_changed();

-- accounts.vdeliver_aliased = an alias of the same address exists. An
-- account being created (or renamed) and an alias being added for the
-- same address in two transactions at once would each miss the other:
-- both first lock their domain's row (FOR NO KEY UPDATE: foreign-key
-- checks are not held up), so the second waits for the first to commit
-- and then, on a fresh snapshot, reads it. A row lock, not an advisory
-- lock: a bulk load in one transaction takes one per domain, not one per
-- row.
CREATE FUNCTION vdeliver_domain_lock(domain bigint) RETURNS void
LANGUAGE sql AS $$
    SELECT FROM domains WHERE id = domain FOR NO KEY UPDATE
$$;

CREATE FUNCTION vdeliver_accounts_aliased() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM vdeliver_domain_lock(NEW.domain_id);
    NEW.vdeliver_aliased := EXISTS (
        SELECT 1 FROM aliases
         WHERE domain_id = NEW.domain_id AND local_part = NEW.local_part);
    RETURN NEW;
END $$;
CREATE TRIGGER accounts_aliased
    BEFORE INSERT OR UPDATE OF domain_id, local_part, vdeliver_aliased ON accounts
    FOR EACH ROW EXECUTE FUNCTION vdeliver_accounts_aliased();

CREATE FUNCTION vdeliver_aliases_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM vdeliver_domain_lock(OLD.domain_id);
        UPDATE accounts SET vdeliver_aliased = false
         WHERE domain_id = OLD.domain_id AND local_part = OLD.local_part;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM vdeliver_domain_lock(NEW.domain_id);
        UPDATE accounts SET vdeliver_aliased = true
         WHERE domain_id = NEW.domain_id AND local_part = NEW.local_part;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER aliases_changed AFTER INSERT OR UPDATE OR DELETE ON aliases
    FOR EACH ROW EXECUTE FUNCTION vdeliver_aliases_changed();

-- The copies for the data already there.
UPDATE domains d SET vdeliver_catchalls = '{}'
 WHERE EXISTS (SELECT 1 FROM catchalls c WHERE c.domain_id = d.id);
UPDATE accounts a SET vdeliver_aliased = true
 WHERE EXISTS (SELECT 1 FROM aliases al
                WHERE al.domain_id = a.domain_id AND al.local_part = a.local_part);

-- vdeliver_lookup(domains, local_parts): every other case. For each
-- (domain, local part) pair, and for every pair reached from them through
-- the literal destinations (no '%') of aliases and catch-alls, up to 16
-- levels, one row per fact, tagged by kind:
--   q  a pair answered (dom, loc)
--   d  its domain: val = the primary name, flag = active
--   c  a catch-all destination of the domain (val)
--   a  the account of a pair: val = maildir, flag = active, qb/qm = the
--      effective quotas (the account's, else the domain's)
--   l  an alias destination of a pair (val)
--   r  the relocated address of a pair (val)
--
-- A function: its statements are planned once per backend and the plans
-- kept (a warm PgBouncer backend plans nothing), and only when reached (a
-- plain account's delivery never loads PL/pgSQL). Every lookup is a
-- LATERAL subquery that the planner cannot flatten (LIMIT / OFFSET 0), so
-- each is an index probe per pair whatever the tables' sizes: no plan
-- flips to reading a whole table as the site grows. It reads and writes
-- nothing else, so it runs on a read-only hot standby and through
-- PgBouncer in transaction mode.
--
-- Local parts and domains taken from destinations are folded ASCII A-Z
-- only, with translate(), never lower(): lower() depends on the ctype
-- (under UTF-8 it maps U+212A KELVIN SIGN onto k).

CREATE FUNCTION vdeliver_lookup(doms text[], locs text[])
RETURNS TABLE (kind text, dom text, loc text, val text, flag boolean, qb bigint, qm bigint)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    all_d text[] := doms;
    all_l text[] := locs;
    new_d text[] := doms;
    new_l text[] := locs;
    depth int := 0;
BEGIN
    -- Widen the pairs, one level at a time, by the literal destinations
    -- of their aliases and of their domains' catch-alls, each pair once.
    LOOP
        EXIT WHEN depth >= 16;
        SELECT array_agg(n.dom), array_agg(n.loc) INTO new_d, new_l
        FROM (
            SELECT DISTINCT
                translate(right(x.dest, strpos(reverse(x.dest), '@') - 1),
                          'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') AS dom,
                translate(left(x.dest, length(x.dest) - strpos(reverse(x.dest), '@')),
                          'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') AS loc
            FROM unnest(new_d, new_l) AS q(dom, loc)
            CROSS JOIN LATERAL (
                SELECT id FROM domains WHERE name = q.dom
                UNION ALL
                SELECT domain_id FROM alias_domains WHERE name = q.dom
                LIMIT 1) qd
            CROSS JOIN LATERAL (
                SELECT destination AS dest FROM aliases
                 WHERE domain_id = qd.id AND local_part = q.loc
                UNION ALL
                SELECT destination FROM catchalls WHERE domain_id = qd.id
                OFFSET 0) x
            WHERE strpos(x.dest, '%') = 0 AND strpos(x.dest, '@') > 1) n
        WHERE NOT EXISTS (
            SELECT 1 FROM unnest(all_d, all_l) AS s(dom, loc)
             WHERE s.dom = n.dom AND s.loc = n.loc);
        EXIT WHEN new_d IS NULL;
        all_d := all_d || new_d;
        all_l := all_l || new_l;
        depth := depth + 1;
    END LOOP;

    RETURN QUERY
    WITH p AS MATERIALIZED (
        SELECT DISTINCT t.dom, t.loc FROM unnest(all_d, all_l) AS t(dom, loc)),
    d AS MATERIALIZED (
        SELECT pd.dom, x.id, x.name, x.active, x.quota_bytes, x.quota_messages
        FROM (SELECT DISTINCT p.dom FROM p) pd
        CROSS JOIN LATERAL (
            SELECT id, name, active, quota_bytes, quota_messages FROM domains WHERE name = pd.dom
            UNION ALL
            SELECT m.id, m.name, m.active, m.quota_bytes, m.quota_messages
              FROM alias_domains ad JOIN domains m ON m.id = ad.domain_id
             WHERE ad.name = pd.dom
            LIMIT 1) x)
    SELECT 'q'::text, p.dom, p.loc, NULL::text, NULL::boolean, NULL::bigint, NULL::bigint
      FROM p
    UNION ALL
    SELECT 'd', d.dom, NULL, d.name, d.active, NULL, NULL
      FROM d
    UNION ALL
    SELECT 'c', d.dom, NULL, c.dest, NULL, NULL, NULL
      FROM d
      CROSS JOIN LATERAL (
          SELECT destination AS dest FROM catchalls WHERE domain_id = d.id OFFSET 0) c
    UNION ALL
    SELECT x.kind, p.dom, p.loc, x.val, x.flag, x.qb, x.qm
      FROM p JOIN d ON d.dom = p.dom
      CROSS JOIN LATERAL (
          SELECT 'a'::text AS kind, a.maildir AS val, a.active AS flag,
                 coalesce(a.quota_bytes, d.quota_bytes) AS qb,
                 coalesce(a.quota_messages, d.quota_messages) AS qm
            FROM accounts a WHERE a.domain_id = d.id AND a.local_part = p.loc
          UNION ALL
          SELECT 'l', al.destination, NULL, NULL, NULL
            FROM aliases al WHERE al.domain_id = d.id AND al.local_part = p.loc
          UNION ALL
          SELECT 'r', r.new_address, NULL, NULL, NULL
            FROM relocated r WHERE r.domain_id = d.id AND r.local_part = p.loc
          OFFSET 0) x
    ORDER BY 1, 2, 3, 4;
END $$;

-- Plans made once per backend and kept: every lookup above is an index
-- probe by shape, so the generic plan is the right one at any size.
ALTER FUNCTION vdeliver_lookup(text[], text[]) SET plan_cache_mode = force_generic_plan;
