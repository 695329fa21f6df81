-- vdeliver schema, version 2: the delivery lookup as a function.
--
-- vdeliver_lookup(domains, local_parts) answers what db::fetch asks: for
-- each (domain, local part) pair, and for every pair reached from them
-- through the literal destinations (no '%') of aliases and catch-alls, up
-- to 16 levels, one row per fact, tagged by kind:
--   q  a pair answered (dom, loc)
--   d  its domain: val = the primary name, flag = active
--   c  a catch-all destination of the domain (val)
--   a  the account of a pair: val = maildir, flag = active, qb/qm = the
--      effective quotas (the account's, else the domain's)
--   l  an alias destination of a pair (val)
--   r  the relocated address of a pair (val)
--
-- Why a function: its statements are planned once per backend and the
-- plans kept (a warm PgBouncer backend plans nothing), and a statement is
-- planned only when reached. Every lookup is a LATERAL subquery that the
-- planner cannot flatten (LIMIT / OFFSET 0), so each is an index probe per
-- pair whatever the tables' sizes: no plan flips to a sequential scan as
-- the site grows. It reads and writes nothing else, so it runs on a
-- read-only hot standby and through PgBouncer in transaction mode.
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
    -- The common case, touching four tables: one pair (an address with a
    -- single candidate), its domain a primary domain, an account there
    -- and no alias for it. Resolution then delivers to that account and
    -- looks at nothing else but the domain's own facts, which come whole
    -- (its catch-alls included: a later round trip's answer replaces what
    -- an earlier one said about a domain).
    IF cardinality(doms) = 1 AND cardinality(locs) = 1 THEN
        RETURN QUERY
        SELECT k.kind, doms[1], k.loc, k.val, k.flag, k.qb, k.qm
          FROM domains m
          JOIN accounts a ON a.domain_id = m.id AND a.local_part = locs[1]
          CROSS JOIN LATERAL (
              SELECT 'q'::text AS kind, locs[1] AS loc, NULL::text AS val, NULL::boolean AS flag,
                     NULL::bigint AS qb, NULL::bigint AS qm
              UNION ALL
              SELECT 'd', NULL, m.name, m.active, NULL, NULL
              UNION ALL
              SELECT 'a', locs[1], a.maildir, a.active,
                     coalesce(a.quota_bytes, m.quota_bytes),
                     coalesce(a.quota_messages, m.quota_messages)
              UNION ALL
              SELECT 'c', NULL, c.destination, NULL, NULL, NULL
                FROM catchalls c WHERE c.domain_id = m.id) k
         WHERE m.name = doms[1]
           AND NOT EXISTS (SELECT 1 FROM aliases al
                            WHERE al.domain_id = m.id AND al.local_part = locs[1]);
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;

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
          OFFSET 0) x;
END $$;

-- Plans made once per backend and kept: every lookup above is an index
-- probe by shape, so the generic plan is the right one at any size.
ALTER FUNCTION vdeliver_lookup(text[], text[]) SET plan_cache_mode = force_generic_plan;
