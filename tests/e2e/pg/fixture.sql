-- The fidelity fixture: every kind of object and value a round trip must reproduce.
-- Run with psql -v ON_ERROR_STOP=1 as a superuser in an empty database; roles
-- app_owner, app_reader and app_writer must exist (created by the test).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

CREATE EXTENSION pgcrypto;
CREATE EXTENSION hstore;
CREATE EXTENSION citext;

CREATE SCHEMA app AUTHORIZATION app_owner;
CREATE SCHEMA audit;
CREATE SCHEMA "Odd Schema";
COMMENT ON SCHEMA app IS 'the application';

-- types
CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE app.pair AS (a integer, b text);
CREATE TYPE app.floatrange AS RANGE (subtype = float8, subtype_diff = float8mi);
CREATE DOMAIN app.email AS citext CHECK (VALUE ~ '^[^@]+@[^@]+$');
CREATE DOMAIN app.posint AS integer NOT NULL CHECK (VALUE > 0);

CREATE SEQUENCE app.invoice_no START 1000 INCREMENT 7;

CREATE TABLE app.customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email app.email UNIQUE,
    name text NOT NULL DEFAULT '',
    mood app.mood DEFAULT 'ok',
    tags text[],
    attrs hstore,
    created timestamptz NOT NULL DEFAULT now(),
    name_upper text GENERATED ALWAYS AS (upper(name)) STORED,
    CHECK (name <> 'forbidden')
);
COMMENT ON TABLE app.customers IS 'people who pay';
COMMENT ON COLUMN app.customers.mood IS 'how they feel';

CREATE TABLE app.accounts (
    id serial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES app.customers (id) DEFERRABLE INITIALLY DEFERRED,
    balance numeric(20, 2) NOT NULL DEFAULT 0 CHECK (balance >= -1000)
);

CREATE TABLE app.invoices (
    no integer PRIMARY KEY DEFAULT nextval('app.invoice_no'),
    account_id integer REFERENCES app.accounts (id) ON DELETE CASCADE,
    amount numeric NOT NULL,
    issued date NOT NULL,
    period interval,
    pair app.pair,
    span app.floatrange,
    doc json,
    docb jsonb,
    blob bytea,
    secret bytea DEFAULT gen_random_bytes(4)
);
CREATE INDEX invoices_issued_partial ON app.invoices (issued) WHERE amount > 100;
CREATE INDEX invoices_lower_doc ON app.invoices ((lower(doc ->> 'k')));
CREATE UNIQUE INDEX invoices_acct_issued ON app.invoices (account_id, issued, no);

CREATE TABLE app.bookings (
    room int,
    during tsrange,
    EXCLUDE USING gist (during WITH &&)
);

-- partitioned, with a default partition
CREATE TABLE app.events (
    id bigint NOT NULL,
    at timestamptz NOT NULL,
    kind text,
    payload jsonb,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE app.events_2025 PARTITION OF app.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE app.events_2026 PARTITION OF app.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE app.events_other PARTITION OF app.events DEFAULT;
CREATE INDEX events_kind ON app.events (kind);

-- inheritance, with a column added to the parent later (column order differs in the child)
CREATE TABLE app.vehicles (id int PRIMARY KEY, wheels int);
CREATE TABLE app.cars (seats int) INHERITS (app.vehicles);
ALTER TABLE app.vehicles ADD COLUMN colour text;

CREATE UNLOGGED TABLE app.cache (k text PRIMARY KEY, v bytea);

-- the values that break naive dumps
CREATE TABLE "Odd Schema"."Weird ""Table""" (
    "Col With Space" text,
    "ünïcödé" text,
    n numeric,
    arr int[][],
    ts timestamptz,
    iv interval,
    j jsonb,
    b bytea,
    e text
);

CREATE TABLE audit.log (id bigserial PRIMARY KEY, at timestamptz DEFAULT now(), what text);
CREATE TABLE app.big (id int PRIMARY KEY, v text);

-- functions, procedures, triggers, rules
CREATE FUNCTION app.add(a int, b int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT a + b';
CREATE FUNCTION audit.note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit.log (what) VALUES (TG_OP || ' ' || TG_TABLE_NAME);
    RETURN NEW;
END
$$;
CREATE PROCEDURE app.transfer(src int, dst int, amt numeric) LANGUAGE plpgsql AS $$
BEGIN
    UPDATE app.accounts SET balance = balance - amt WHERE id = src;
    UPDATE app.accounts SET balance = balance + amt WHERE id = dst;
END
$$;
CREATE TRIGGER customers_audit AFTER INSERT OR UPDATE ON app.customers
    FOR EACH ROW EXECUTE FUNCTION audit.note();
CREATE TABLE app.bookings_log (room int, at timestamptz);
CREATE RULE bookings_log_rule AS ON INSERT TO app.bookings
    DO ALSO INSERT INTO app.bookings_log VALUES (NEW.room, '2026-01-01');

-- views
CREATE VIEW app.rich AS SELECT c.name, a.balance FROM app.customers c JOIN app.accounts a ON a.customer_id = c.id WHERE a.balance > 100;
CREATE MATERIALIZED VIEW app.totals AS SELECT customer_id, sum(balance) AS total FROM app.accounts GROUP BY customer_id;
CREATE UNIQUE INDEX totals_customer ON app.totals (customer_id);

-- ownership, grants, row-level security
ALTER TABLE app.accounts OWNER TO app_owner;
ALTER TABLE app.invoices OWNER TO app_owner;
GRANT USAGE ON SCHEMA app TO app_reader, app_writer;
GRANT SELECT ON ALL TABLES IN SCHEMA app TO app_reader;
GRANT SELECT, INSERT, UPDATE ON app.accounts TO app_writer;
GRANT EXECUTE ON FUNCTION app.add(int, int) TO app_writer;
ALTER TABLE app.accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY accounts_writer ON app.accounts TO app_writer USING (balance < 1000000);

-- data
INSERT INTO app.customers (email, name, mood, tags, attrs, created) VALUES
    ('a@x.org', 'Ann', 'happy', '{vip,"with space",NULL}', 'k=>v, "q q"=>NULL', '2025-03-01 10:00:00+02'),
    ('b@x.org', '', 'sad', '{}', NULL, '2025-03-02 11:30:00.123456+00'),
    (NULL, 'Ünïcode ☃ 名前', NULL, NULL, '', '1999-12-31 23:59:59.999999-08');
INSERT INTO app.accounts (customer_id, balance)
    SELECT 1 + (g % 3), 500 FROM generate_series(1, 200) g;
INSERT INTO app.invoices (account_id, amount, issued, period, pair, span, doc, docb, blob)
SELECT 1 + g % 200, g * 1.5, date '2025-01-01' + g, make_interval(days => g, secs => g * 0.25),
       ROW(g, 'p' || g)::app.pair, app.floatrange(g, g + 0.5), json_build_object('k', 'K' || g, 'n', g),
       jsonb_build_object('deep', jsonb_build_object('arr', jsonb_build_array(g, 'x', NULL, true))),
       decode(md5(g::text), 'hex')
FROM generate_series(1, 500) g;
INSERT INTO app.bookings VALUES (1, '[2026-01-01,2026-01-02)'), (2, '[2026-01-03,2026-01-04)');
INSERT INTO app.events SELECT g, timestamptz '2025-06-01' + g * interval '1 day', 'k' || (g % 5), jsonb_build_object('g', g)
FROM generate_series(1, 800) g;
INSERT INTO app.vehicles VALUES (1, 2, 'red');
INSERT INTO app.cars (id, wheels, seats, colour) VALUES (2, 4, 5, 'blue'), (3, 4, 7, NULL);
INSERT INTO app.cache VALUES ('a', '\x00ff'), ('b', NULL);
INSERT INTO "Odd Schema"."Weird ""Table""" VALUES
    (NULL, '', 123456789012345678901234567890.123456789012345678901, '{{1,2},{3,NULL}}',
     '2026-11-26 05:41:28.5+05:30', '1 year 2 mons -3 days 04:05:06.789', '{"a": [1, 2.50, "\u00e9"], "b": null}',
     '\x000102ff', E'tab\there'),
    ('', NULL, 'NaN', '{}', 'infinity', '-178000000 years', '[]', '', E'line\nbreak\r\nand \\ backslash'),
    (E'\\N', E'\t', '-0.000000000000000000001', NULL, '-infinity', '0', 'null', NULL, 'null'),
    ('NULL', '日本語テキスト 🐘', '1e100', '{{-1,-2}}', '1970-01-01 00:00:00+00', '1 microsecond', '{"k": "a\nb\tc\\d"}', decode(repeat('ab', 3000), 'hex'), E'\x01\x7f');
INSERT INTO app.big SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
CALL app.transfer(1, 2, 10.25);
SELECT nextval('app.invoice_no') FROM generate_series(1, 5);
SELECT nextval('audit.log_id_seq');
REFRESH MATERIALIZED VIEW app.totals;

-- large objects
SELECT lo_from_bytea(424242, convert_to('a large object', 'UTF8'));
SELECT lo_from_bytea(0, decode(repeat('00ff', 70000), 'hex'));
COMMENT ON LARGE OBJECT 424242 IS 'a blob with a comment';
ALTER LARGE OBJECT 424242 OWNER TO app_owner;

-- database-level properties
ALTER DATABASE :"DBNAME" SET work_mem = '7MB';
ALTER DATABASE :"DBNAME" SET search_path = app, "$user", public;
COMMENT ON DATABASE :"DBNAME" IS 'fidelity fixture';
GRANT CONNECT, TEMPORARY ON DATABASE :"DBNAME" TO app_reader;
ALTER DATABASE :"DBNAME" CONNECTION LIMIT 40;
