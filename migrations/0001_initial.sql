-- vdeliver schema, version 1: everything SPEC §3 and §7 need.
--
-- Names are stored lowercased (domains in their ASCII/punycode form); the
-- CHECK constraints refuse anything else, so a lookup never needs lower().
-- Maildir paths are relative to mail.root; vdeliver confines them beneath it.

CREATE TABLE domains (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE
                    CHECK (name = lower(name) AND name <> '' AND name !~ '[^a-z0-9.-]'),
    active          boolean NOT NULL DEFAULT true,
    quota_bytes     bigint CHECK (quota_bytes >= 0),      -- NULL or 0: unlimited
    quota_messages  bigint CHECK (quota_messages >= 0),   -- NULL or 0: unlimited
    note            text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE alias_domains (
    name        text PRIMARY KEY
                CHECK (name = lower(name) AND name <> '' AND name !~ '[^a-z0-9.-]'),
    domain_id   bigint NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alias_domains_domain_id ON alias_domains (domain_id);

-- A name is a primary domain or an alias domain, never both.
CREATE FUNCTION vdeliver_domain_name_free() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'domains' THEN
        IF EXISTS (SELECT 1 FROM alias_domains WHERE name = NEW.name) THEN
            RAISE EXCEPTION 'domain % is already an alias domain', NEW.name
                USING ERRCODE = 'unique_violation';
        END IF;
    ELSIF EXISTS (SELECT 1 FROM domains WHERE name = NEW.name) THEN
        RAISE EXCEPTION 'domain % is already a primary domain', NEW.name
            USING ERRCODE = 'unique_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER domains_name_free BEFORE INSERT OR UPDATE OF name ON domains
    FOR EACH ROW EXECUTE FUNCTION vdeliver_domain_name_free();
CREATE TRIGGER alias_domains_name_free BEFORE INSERT OR UPDATE OF name ON alias_domains
    FOR EACH ROW EXECUTE FUNCTION vdeliver_domain_name_free();

CREATE TABLE accounts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    domain_id       bigint NOT NULL REFERENCES domains (id) ON DELETE RESTRICT,
    local_part      text NOT NULL CHECK (local_part = lower(local_part) AND local_part <> ''),
    password_hash   text,                                  -- NULL: cannot log in
    maildir         text NOT NULL CHECK (maildir <> '' AND maildir !~ '^/'),
    quota_bytes     bigint CHECK (quota_bytes >= 0),       -- NULL: the domain's default
    quota_messages  bigint CHECK (quota_messages >= 0),    -- NULL: the domain's default
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (domain_id, local_part)
);

-- address -> one row per destination (Postfix virtual_alias_maps semantics).
CREATE TABLE aliases (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    domain_id    bigint NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
    local_part   text NOT NULL CHECK (local_part = lower(local_part) AND local_part <> ''),
    destination  text NOT NULL CHECK (destination <> ''),
    UNIQUE (domain_id, local_part, destination)
);

CREATE TABLE catchalls (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    domain_id    bigint NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
    destination  text NOT NULL CHECK (destination <> ''),
    UNIQUE (domain_id, destination)
);

CREATE TABLE relocated (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    domain_id    bigint NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
    local_part   text NOT NULL CHECK (local_part = lower(local_part) AND local_part <> ''),
    new_address  text NOT NULL CHECK (new_address <> ''),
    UNIQUE (domain_id, local_part)
);

-- An address is an account or relocated, never both.
CREATE FUNCTION vdeliver_address_free() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'accounts' THEN
        IF EXISTS (SELECT 1 FROM relocated
                   WHERE domain_id = NEW.domain_id AND local_part = NEW.local_part) THEN
            RAISE EXCEPTION 'address is already relocated' USING ERRCODE = 'unique_violation';
        END IF;
    ELSIF EXISTS (SELECT 1 FROM accounts
                  WHERE domain_id = NEW.domain_id AND local_part = NEW.local_part) THEN
        RAISE EXCEPTION 'address is already an account' USING ERRCODE = 'unique_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER accounts_address_free BEFORE INSERT OR UPDATE OF domain_id, local_part ON accounts
    FOR EACH ROW EXECUTE FUNCTION vdeliver_address_free();
CREATE TRIGGER relocated_address_free BEFORE INSERT OR UPDATE OF domain_id, local_part ON relocated
    FOR EACH ROW EXECUTE FUNCTION vdeliver_address_free();
