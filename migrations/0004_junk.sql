-- vdeliver schema, version 4: an account's own Junk routing setting.
--
-- accounts.junk: true (file spam into the Junk folder), false (never), or
-- NULL (follow the site's default, `junk.enabled` in the configuration).
-- `vmailctl account junk ADDRESS on|off|default` sets it. A nullable
-- column without a default: adding it rewrites no row, whatever the
-- table's size, and every account already there follows the site.
--
-- Delivery reads it with the account in the same one statement, whichever
-- layer answers: the plain account's row (db::FETCH), vdeliver_route()'s
-- pair and destination columns, and vdeliver_lookup()'s account facts
-- (kind 'a'). Both functions gain a column, which CREATE OR REPLACE cannot
-- do, so they are dropped and created again below with everything
-- versions 2 and 3 gave them (STRICT, vdeliver_lookup's generic plans);
-- the only change is the new column. Nothing else refers to them but the
-- delivery statement, which names them by text.

ALTER TABLE accounts ADD COLUMN junk boolean;

COMMENT ON COLUMN accounts.junk IS
    'Junk routing for this account: true on, false off, NULL the site default (junk.enabled)';

DROP FUNCTION vdeliver_route(text[], text[]);
DROP FUNCTION vdeliver_lookup(text[], text[]);

-- vdeliver_lookup(domains, local_parts): every other case. For each
-- (domain, local part) pair, and for every pair reached from them through
-- the literal destinations (no '%') of aliases and catch-alls, up to 16
-- levels, one row per fact, tagged by kind:
--   q  a pair answered (dom, loc)
--   d  its domain: val = the primary name, flag = active
--   c  a catch-all destination of the domain (val)
--   a  the account of a pair: val = maildir, flag = active, qb/qm = the
--      effective quotas (the account's, else the domain's), junk = the
--      account's Junk routing setting (NULL: the site's default)
--   l  an alias destination of a pair (val)
--   r  the relocated address of a pair (val)
-- (junk is NULL on every row but an account's.)
--
-- A function: its statements are planned once per backend and the plans
-- kept (a warm PgBouncer backend plans nothing), and only when reached (a
-- plain account's delivery never loads PL/pgSQL). Every lookup is a
-- LATERAL subquery that the planner cannot flatten (LIMIT / OFFSET 0), so
-- each is an index probe per pair whatever the tables' sizes: no plan
-- flips to reading a whole table as the site grows. It reads and writes
-- nothing else, so it runs on a read-only hot standby and through
-- PgBouncer in transaction mode. STRICT (since version 3): the delivery
-- statement skips the call by passing NULL.
--
-- Local parts and domains taken from destinations are folded ASCII A-Z
-- only, with translate(), never lower(): lower() depends on the ctype
-- (under UTF-8 it maps U+212A KELVIN SIGN onto k).

CREATE FUNCTION vdeliver_lookup(doms text[], locs text[])
RETURNS TABLE (kind text, dom text, loc text, val text, flag boolean, qb bigint, qm bigint,
               junk boolean)
LANGUAGE plpgsql STABLE STRICT AS $$
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
    SELECT 'q'::text, p.dom, p.loc, NULL::text, NULL::boolean, NULL::bigint, NULL::bigint,
           NULL::boolean
      FROM p
    UNION ALL
    SELECT 'd', d.dom, NULL, d.name, d.active, NULL, NULL, NULL
      FROM d
    UNION ALL
    SELECT 'c', d.dom, NULL, c.dest, NULL, NULL, NULL, NULL
      FROM d
      CROSS JOIN LATERAL (
          SELECT destination AS dest FROM catchalls WHERE domain_id = d.id OFFSET 0) c
    UNION ALL
    SELECT x.kind, p.dom, p.loc, x.val, x.flag, x.qb, x.qm, x.junk
      FROM p JOIN d ON d.dom = p.dom
      CROSS JOIN LATERAL (
          SELECT 'a'::text AS kind, a.maildir AS val, a.active AS flag,
                 coalesce(a.quota_bytes, d.quota_bytes) AS qb,
                 coalesce(a.quota_messages, d.quota_messages) AS qm,
                 a.junk AS junk
            FROM accounts a WHERE a.domain_id = d.id AND a.local_part = p.loc
          UNION ALL
          SELECT 'l', al.destination, NULL, NULL, NULL, NULL
            FROM aliases al WHERE al.domain_id = d.id AND al.local_part = p.loc
          UNION ALL
          SELECT 'r', r.new_address, NULL, NULL, NULL, NULL
            FROM relocated r WHERE r.domain_id = d.id AND r.local_part = p.loc
          OFFSET 0) x
    ORDER BY 1, 2, 3, 4;
END $$;

-- Plans made once per backend and kept: every lookup above is an index
-- probe by shape, so the generic plan is the right one at any size.
ALTER FUNCTION vdeliver_lookup(text[], text[]) SET plan_cache_mode = force_generic_plan;

-- vdeliver_route(domains, local parts): for each pair asked, its facts,
-- and the facts of each pair its aliases' literal destinations name (or,
-- for a pair with neither an account nor aliases, its domain's
-- catch-alls'), one row per (pair, destination):
--   dom, loc, val, flag, qb, qm, junk, dname, dactive, dcatchalls, dests, rel
--       the pair: its account's Maildir and active flag (NULL: no
--       account), the effective quotas (the account's, else the
--       domain's), the account's Junk routing setting (NULL: the site's
--       default, or no account), its domain's name, active flag and
--       catch-all destinations (dname NULL: not a primary domain), its
--       alias destinations and relocated address (dests NULL: neither)
--   tdom, tloc, tval, tflag, tqb, tqm, tjunk, tdname, tdactive, tdcatchalls
--       the destination pair, the same way (NULL: none)
--   tmore
--       the destination is not a plain account (no account, an alias of
--       its own: a chain, or not in a primary domain): its facts are in
--       the l columns instead
--   lkind, ldom, lloc, lval, lflag, lqb, lqm, ljunk
--       vdeliver_lookup()'s rows, one per row here, for the pair when its
--       domain is not a primary domain (an alias domain, or unknown), or
--       for the destination when tmore: it follows chains to their end.
-- So the answer is whole in one statement, and PL/pgSQL is loaded only
-- when a chain, an alias domain or a remote destination needs it. An
-- account or relocated row with a NULL where the schema forbids one (a
-- constraint dropped by hand) goes to vdeliver_lookup() too: here it
-- would read as "no account" or "not relocated", there it is an error.
-- (accounts.junk may be NULL: that is "the site's default", not a fault.)
--
-- Every lookup is a LATERAL subquery the planner cannot flatten (OFFSET
-- 0), so each is an index probe per pair whatever the tables' sizes. The
-- function is STRICT, which keeps the planner from inlining it into the
-- calling statement (whose plan would then carry this one's for every
-- delivery), and lets that statement skip the call with a NULL argument.
CREATE FUNCTION vdeliver_route(doms text[], locs text[])
RETURNS TABLE (dom text, loc text, val text, flag boolean, qb bigint, qm bigint, junk boolean,
               dname text, dactive boolean, dcatchalls text[], dests text[], rel text,
               tdom text, tloc text, tval text, tflag boolean, tqb bigint, tqm bigint,
               tjunk boolean, tdname text, tdactive boolean, tdcatchalls text[], tmore boolean,
               lkind text, ldom text, lloc text, lval text, lflag boolean, lqb bigint, lqm bigint,
               ljunk boolean)
LANGUAGE sql STABLE STRICT AS $$
SELECT p.dom, p.loc, a.maildir, a.active,
       coalesce(a.quota_bytes, m.quota_bytes), coalesce(a.quota_messages, m.quota_messages),
       a.junk, m.name, m.active, m.vdeliver_catchalls, r.aliases, r.relocated,
       t.dom, t.loc, t.maildir, t.active, t.qb, t.qm, t.junk, t.name, t.dactive, t.catchalls,
       t.more,
       l.kind, l.dom, l.loc, l.val, l.flag, l.qb, l.qm, l.junk
  FROM unnest(doms, locs) AS p(dom, loc)
  LEFT JOIN LATERAL (
       SELECT m.id, m.name, m.active, m.vdeliver_catchalls, m.quota_bytes, m.quota_messages,
              m.vdeliver_catchall_domains, m.vdeliver_catchall_locals
         FROM domains m WHERE m.name = p.dom OFFSET 0) m ON true
  LEFT JOIN LATERAL (
       SELECT a.maildir, a.active, a.quota_bytes, a.quota_messages, a.junk,
              a.maildir IS NULL OR a.active IS NULL AS broken
         FROM accounts a WHERE a.domain_id = m.id AND a.local_part = p.loc OFFSET 0) a ON true
  LEFT JOIN LATERAL (
       SELECT r.aliases, r.relocated, r.target_domains, r.target_locals,
              cardinality(r.aliases) = 0 AND r.relocated IS NULL AS broken
         FROM vdeliver_routes r WHERE r.domain_id = m.id AND r.local_part = p.loc OFFSET 0) r ON true
  LEFT JOIN LATERAL (
       SELECT t.dom, t.loc, x.name, x.active AS dactive, x.vdeliver_catchalls AS catchalls,
              y.maildir, y.active, coalesce(y.quota_bytes, x.quota_bytes) AS qb,
              coalesce(y.quota_messages, x.quota_messages) AS qm, y.junk,
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
              SELECT y.maildir, y.active, y.quota_bytes, y.quota_messages, y.junk,
                     y.vdeliver_aliased
                FROM accounts y
               WHERE y.domain_id = x.id AND y.local_part = t.loc OFFSET 0) y ON true) t ON true
  LEFT JOIN LATERAL vdeliver_lookup(
       CASE WHEN m.name IS NULL OR a.broken OR r.broken THEN ARRAY[p.dom]
            WHEN t.more THEN ARRAY[t.dom] END,
       CASE WHEN m.name IS NULL OR a.broken OR r.broken THEN ARRAY[p.loc]
            WHEN t.more THEN ARRAY[t.loc] END) AS l ON true
$$;
