-- Statements the guard must let through (Allow, or Rewrite where marked).
-- Format: each case starts with a line `-- @case <name> [class N] [rewrite]`;
-- everything up to the next `-- @case` line is the exact message body
-- (trailing blank lines removed). Shared by tests/guard_unit.rs and the
-- through-the-proxy tests.

-- @case plain_select_by_id
SELECT * FROM agent_instances WHERE id = $1
-- @case select_one
SELECT 1
-- @case select_version
SELECT version()
-- @case select_now
SELECT now()
-- @case read_pinned_tenant
select current_setting('app.current_organization_id')
-- @case read_pinned_tenant_missing_ok
SELECT current_setting('app.current_organization_id', true)::uuid
-- @case read_pinned_user
SELECT NULLIF(current_setting('app.current_user_id', true), '')::uuid AS user_id
-- @case show_pinned_tenant
SHOW app.current_organization_id
-- @case show_all
SHOW ALL
-- @case show_standard_conforming_strings
show standard_conforming_strings
-- @case show_transaction_isolation
SHOW TRANSACTION ISOLATION LEVEL
-- @case set_statement_timeout
SET statement_timeout = '5s'
-- @case set_local_statement_timeout
SET LOCAL statement_timeout TO 1000
-- @case set_search_path
SET search_path TO public, "$user"
-- @case set_schema
SET SCHEMA 'public'
-- @case set_application_name
SET application_name = 'billing-worker'
-- @case set_time_zone
SET TIME ZONE 'UTC'
-- @case set_timezone_param
SET timezone TO 'Europe/Paris'
-- @case set_datestyle
SET DateStyle TO ISO, MDY
-- @case set_extra_float_digits
SET extra_float_digits = 3
-- @case set_lock_timeout
SET lock_timeout = '2s'
-- @case set_idle_in_transaction_timeout
SET idle_in_transaction_session_timeout = 60000
-- @case set_work_mem_session
SET SESSION work_mem = '64MB'
-- @case set_unprotected_custom_setting
SET app.request_id = 'abc-123'
-- @case set_escape_string_warning
SET escape_string_warning = off
-- @case set_client_encoding_utf8
SET client_encoding TO 'UTF8'
-- @case set_names_utf8
SET NAMES 'utf8'
-- @case set_standard_conforming_strings_on
SET standard_conforming_strings = on
-- @case reset_statement_timeout
RESET statement_timeout
-- @case reset_client_encoding
RESET client_encoding
-- @case reset_all
RESET ALL
-- @case discard_all
DISCARD ALL
-- @case discard_plans
DISCARD PLANS
-- @case reset_role
RESET ROLE
-- @case set_role_none
SET ROLE NONE
-- @case reset_session_authorization
RESET SESSION AUTHORIZATION
-- @case set_config_application_name
SELECT set_config('application_name', 'reporting', false)
-- @case set_config_search_path_param_value
SELECT set_config('search_path', $1, true)
-- @case set_config_text_cast_name
SELECT pg_catalog.set_config('statement_timeout'::text, '5s', true)
-- @case django_set_time_zone
SELECT set_config('TimeZone', 'UTC', false)
-- @case update_table_set
UPDATE orders SET status = 'shipped', updated_at = now() WHERE id = $1
-- @case update_table_named_settings
UPDATE settings SET value = 'x' WHERE key = 'app.current_organization_id'
-- @case comment_mentions_protected
-- SET app.current_organization_id = 'other tenant'
SELECT 1
-- @case block_comment_mentions_set_config
SELECT /* set_config('app.current_organization_id', 'x', false) */ id FROM projects
-- @case literal_mentions_set_config
SELECT 'set_config(''app.current_organization_id'', ''x'', false)' AS doc
-- @case literal_mentions_side_channels
SELECT 'pg_stat_activity' AS a, 'pg_terminate_backend' AS b, 'lo_import' AS c
-- @case comment_on_mentions_side_channel
COMMENT ON TABLE projects IS 'pg_stat_activity'
-- @case column_with_lo_prefix
SELECT lo_price, lower(name) FROM products
-- @case read_pg_settings
SELECT name, setting FROM pg_settings WHERE name = 'max_identifier_length'
-- @case begin_isolation_level
BEGIN ISOLATION LEVEL SERIALIZABLE
-- @case start_transaction_read_only
START TRANSACTION READ ONLY
-- @case set_transaction_isolation
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ
-- @case set_session_characteristics
SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED
-- @case savepoint
SAVEPOINT sa_savepoint_1
-- @case rollback_to_savepoint
ROLLBACK TO SAVEPOINT PGJDBC_AUTOSAVE
-- @case release_savepoint
RELEASE SAVEPOINT PGJDBC_AUTOSAVE
-- @case commit
COMMIT
-- @case rollback
ROLLBACK
-- @case deallocate_all
DEALLOCATE ALL
-- @case deallocate_named
DEALLOCATE "__asyncpg_stmt_1__"
-- @case prepare_execute
PREPARE get_project (uuid) AS SELECT * FROM projects WHERE id = $1; EXECUTE get_project('00000000-0000-0000-0000-000000000001')
-- @case declare_fetch_close
DECLARE c CURSOR WITH HOLD FOR SELECT id FROM projects; FETCH 10 FROM c; CLOSE c
-- @case copy_query_to_stdout
COPY (SELECT id, name FROM projects) TO STDOUT WITH (FORMAT csv, HEADER true)
-- @case copy_from_stdin
COPY projects (id, name) FROM STDIN WITH (FORMAT binary)
-- @case create_temp_table
CREATE TEMP TABLE tmp_ids (id uuid PRIMARY KEY) ON COMMIT DROP
-- @case create_table_as
CREATE TEMP TABLE recent AS SELECT * FROM projects WHERE created_at > now() - interval '1 day'
-- @case insert_on_conflict
INSERT INTO projects (id, name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name RETURNING id
-- @case merge
MERGE INTO stock s USING deliveries d ON s.item_id = d.item_id WHEN MATCHED THEN UPDATE SET qty = s.qty + d.qty WHEN NOT MATCHED THEN INSERT (item_id, qty) VALUES (d.item_id, d.qty)
-- @case select_for_update_skip_locked
SELECT id FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 10 FOR UPDATE SKIP LOCKED
-- @case recursive_cte_window
WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 10) SELECT n, row_number() OVER (ORDER BY n DESC) FROM t
-- @case alter_table_add_column
ALTER TABLE projects ADD COLUMN archived boolean NOT NULL DEFAULT false
-- @case create_index_concurrently
CREATE INDEX CONCURRENTLY IF NOT EXISTS projects_name_idx ON projects (lower(name))
-- @case analyze_table
ANALYZE projects
-- @case own_backend_pid
SELECT pg_backend_pid()
-- @case ts_rewrite_three_args
SELECT ts_rewrite('a & b'::tsquery, 'a'::tsquery, 'c'::tsquery)
-- @case listening_channels
SELECT pg_listening_channels()
-- @case listen_channel [rewrite]
LISTEN jobs
-- @case notify_channel_payload [rewrite]
NOTIFY jobs, 'job 42 done'
-- @case unlisten_channel [rewrite]
UNLISTEN jobs
-- @case unlisten_all
UNLISTEN *
-- @case empty_query

-- @case only_comment
-- nothing to do
-- @case asyncpg_pool_reset
SELECT pg_advisory_unlock_all();
CLOSE ALL;
UNLISTEN *;
RESET ALL;
-- @case pgbouncer_style_reset
DISCARD ALL
-- @case psycopg_sqlalchemy_current_schema
select current_schema()
-- @case sqlalchemy_plain_returns
SELECT CAST('test plain returns' AS VARCHAR(60)) AS anon_1
-- @case sqlalchemy_has_table
SELECT pg_catalog.pg_class.relname
FROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace
WHERE pg_catalog.pg_class.relname = 'projects' AND pg_catalog.pg_class.relkind = ANY (ARRAY['r', 'p', 'f', 'v', 'm']) AND pg_catalog.pg_table_is_visible(pg_catalog.pg_class.oid) AND pg_catalog.pg_namespace.nspname != 'pg_catalog'
-- @case sqlalchemy_get_columns
SELECT pg_catalog.pg_attribute.attname AS name, pg_catalog.format_type(pg_catalog.pg_attribute.atttypid, pg_catalog.pg_attribute.atttypmod) AS format_type, (SELECT pg_catalog.pg_get_expr(pg_catalog.pg_attrdef.adbin, pg_catalog.pg_attrdef.adrelid) AS pg_get_expr_1
FROM pg_catalog.pg_attrdef
WHERE pg_catalog.pg_attrdef.adrelid = pg_catalog.pg_attribute.attrelid AND pg_catalog.pg_attrdef.adnum = pg_catalog.pg_attribute.attnum AND pg_catalog.pg_attribute.atthasdef) AS "default", pg_catalog.pg_attribute.attnotnull AS not_null, pg_catalog.pg_class.relname AS table_name, pg_catalog.pg_description.description AS comment, pg_catalog.pg_attribute.attgenerated AS generated, pg_catalog.pg_attribute.attidentity AS identity_options
FROM pg_catalog.pg_class LEFT OUTER JOIN pg_catalog.pg_attribute ON pg_catalog.pg_class.oid = pg_catalog.pg_attribute.attrelid AND pg_catalog.pg_attribute.attnum > 0 AND NOT pg_catalog.pg_attribute.attisdropped LEFT OUTER JOIN pg_catalog.pg_description ON pg_catalog.pg_description.objoid = pg_catalog.pg_attribute.attrelid AND pg_catalog.pg_description.objsubid = pg_catalog.pg_attribute.attnum JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace
WHERE pg_catalog.pg_class.relkind = ANY (ARRAY['r', 'p', 'f', 'v', 'm']) AND pg_catalog.pg_table_is_visible(pg_catalog.pg_class.oid) AND pg_catalog.pg_namespace.nspname != 'pg_catalog' AND pg_catalog.pg_class.relname IN ('projects') ORDER BY pg_catalog.pg_class.relname, pg_catalog.pg_attribute.attnum
-- @case django_table_list
SELECT
    c.relname,
    CASE
        WHEN c.relispartition THEN 'p'
        WHEN c.relkind IN ('m', 'v') THEN 'v'
        ELSE 't'
    END,
    obj_description(c.oid, 'pg_class')
FROM pg_catalog.pg_class c
LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('f', 'm', 'p', 'r', 'v')
    AND n.nspname NOT IN ('pg_catalog', 'pg_toast')
    AND pg_catalog.pg_table_is_visible(c.oid)
-- @case django_migrations_select
SELECT "django_migrations"."id", "django_migrations"."app", "django_migrations"."name", "django_migrations"."applied" FROM "django_migrations"
-- @case django_insert_returning
INSERT INTO "app_item" ("name", "created") VALUES ('x', '2024-01-01T00:00:00+00:00'::timestamptz) RETURNING "app_item"."id"
-- @case django_constraints
SELECT
    c.conname,
    array(
        SELECT attname
        FROM unnest(c.conkey) WITH ORDINALITY cols(colid, arridx)
        JOIN pg_attribute AS ca ON cols.colid = ca.attnum
        WHERE ca.attrelid = c.conrelid
        ORDER BY cols.arridx
    ),
    c.contype,
    (SELECT fkc.relname || '.' || fka.attname
    FROM pg_attribute AS fka
    JOIN pg_class AS fkc ON fka.attrelid = fkc.oid
    WHERE fka.attrelid = c.confrelid AND fka.attnum = c.confkey[1]),
    cl.reloptions
FROM pg_constraint AS c
JOIN pg_class AS cl ON c.conrelid = cl.oid
WHERE cl.relname = 'app_item' AND pg_catalog.pg_table_is_visible(cl.oid)
-- @case prisma_find_unique
SELECT "public"."User"."id", "public"."User"."email", "public"."User"."name" FROM "public"."User" WHERE ("public"."User"."id" = $1 AND 1=1) LIMIT $2 OFFSET $3
-- @case prisma_create_returning
INSERT INTO "public"."Post" ("id","title","authorId") VALUES ($1,$2,$3) RETURNING "public"."Post"."id", "public"."Post"."title"
-- @case prisma_version_probe
SELECT version(), current_setting('server_version_num')::integer AS numeric_version
-- @case pgjdbc_type_by_oid
SELECT typinput='pg_catalog.array_in'::regproc as is_array, typtype, typname, pg_type.oid   FROM pg_catalog.pg_type   LEFT JOIN (select ns.oid as nspoid, ns.nspname, r.r           from pg_namespace as ns           join ( select s.r, (current_schemas(false))[s.r] as nspname                    from generate_series(1, array_upper(current_schemas(false), 1)) as s(r) ) as r          using ( nspname )        ) as sp     ON sp.nspoid = typnamespace  WHERE pg_type.oid = $1  ORDER BY sp.r, pg_type.oid DESC
-- @case pgjdbc_type_namespace
SELECT n.nspname = ANY(current_schemas(true)), n.nspname, t.typname FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON t.typnamespace = n.oid WHERE t.oid = $1
-- @case pgjdbc_get_tables
SELECT NULL AS TABLE_CAT, n.nspname AS TABLE_SCHEM, c.relname AS TABLE_NAME,  CASE n.nspname ~ '^pg_' OR n.nspname = 'information_schema'  WHEN true THEN CASE  WHEN n.nspname = 'pg_catalog' OR n.nspname = 'information_schema' THEN CASE c.relkind   WHEN 'r' THEN 'SYSTEM TABLE'   WHEN 'v' THEN 'SYSTEM VIEW'   WHEN 'i' THEN 'SYSTEM INDEX'   ELSE NULL   END  ELSE NULL  END  ELSE CASE c.relkind   WHEN 'r' THEN 'TABLE'   WHEN 'p' THEN 'PARTITIONED TABLE'   WHEN 'v' THEN 'VIEW'   ELSE NULL   END  END  AS TABLE_TYPE, d.description AS REMARKS,  '' as TYPE_CAT, '' as TYPE_SCHEM, '' as TYPE_NAME, '' AS SELF_REFERENCING_COL_NAME, '' AS REF_GENERATION  FROM pg_catalog.pg_namespace n, pg_catalog.pg_class c  LEFT JOIN pg_catalog.pg_description d ON (c.oid = d.objoid AND d.objsubid = 0  and d.classoid = 'pg_class'::regclass)  WHERE c.relnamespace = n.oid  AND c.relname LIKE 'projects' ORDER BY TABLE_TYPE,TABLE_SCHEM,TABLE_NAME
-- @case pgjdbc_set_application_name
SET application_name = 'PostgreSQL JDBC Driver'
-- @case psycopg_type_info
SELECT typname AS name, oid, typarray AS array_oid, oid::regtype::text AS regtype, typdelim AS delimiter FROM pg_type t WHERE t.oid = 'hstore'::regtype ORDER BY t.oid
-- @case asyncpg_introspect_types
WITH RECURSIVE typeinfo_tree(
    oid, ns, name, kind, basetype, elemtype, elemdelim,
    range_subtype, attrtypoids, attrnames, depth)
AS (
    SELECT
        ti.oid, ti.ns, ti.name, ti.kind, ti.basetype,
        ti.elemtype, ti.elemdelim, ti.range_subtype,
        ti.attrtypoids, ti.attrnames, 0
    FROM
        (
            SELECT
                t.oid AS oid,
                ns.nspname AS ns,
                t.typname AS name,
                t.typtype AS kind,
                (CASE WHEN t.typtype = 'd' THEN
                    (WITH RECURSIVE typebases(oid, depth) AS (
                        SELECT t2.typbasetype AS oid, 0 AS depth
                        FROM pg_type t2
                        WHERE t2.oid = t.oid
                        UNION ALL
                        SELECT t2.typbasetype AS oid, tb.depth + 1 AS depth
                        FROM pg_type t2, typebases tb
                        WHERE tb.oid = t2.oid AND t2.typbasetype != 0
                    ) SELECT oid FROM typebases ORDER BY depth DESC LIMIT 1)
                ELSE NULL
                END) AS basetype,
                t.typelem AS elemtype,
                elem_t.typdelim AS elemdelim,
                range_t.rngsubtype AS range_subtype,
                (CASE WHEN t.typtype = 'c' THEN
                    (SELECT array_agg(ia.atttypid ORDER BY ia.attnum)
                     FROM pg_attribute ia INNER JOIN pg_class c ON (ia.attrelid = c.oid)
                     WHERE ia.attnum > 0 AND NOT ia.attisdropped AND c.reltype = t.oid)
                ELSE NULL
                END) AS attrtypoids,
                (CASE WHEN t.typtype = 'c' THEN
                    (SELECT array_agg(ia.attname::text ORDER BY ia.attnum)
                     FROM pg_attribute ia INNER JOIN pg_class c ON (ia.attrelid = c.oid)
                     WHERE ia.attnum > 0 AND NOT ia.attisdropped AND c.reltype = t.oid)
                ELSE NULL
                END) AS attrnames
            FROM
                pg_catalog.pg_type AS t
                INNER JOIN pg_catalog.pg_namespace ns ON (ns.oid = t.typnamespace)
                LEFT JOIN pg_type elem_t ON (t.typlen = -1 AND t.typelem != 0 AND t.typelem = elem_t.oid)
                LEFT JOIN pg_range range_t ON (t.oid = range_t.rngtypid)
        ) AS ti
    WHERE
        ti.oid = any($1::oid[])
    UNION ALL
    SELECT
        ti.oid, ti.ns, ti.name, ti.kind, ti.basetype,
        ti.elemtype, ti.elemdelim, ti.range_subtype,
        ti.attrtypoids, ti.attrnames, tt.depth + 1
    FROM
        (SELECT t.oid AS oid, NULL::name AS ns, t.typname AS name, t.typtype AS kind, NULL::oid AS basetype, t.typelem AS elemtype, NULL::"char" AS elemdelim, NULL::oid AS range_subtype, NULL::oid[] AS attrtypoids, NULL::text[] AS attrnames FROM pg_catalog.pg_type AS t) ti,
        typeinfo_tree tt
    WHERE
        (tt.elemtype IS NOT NULL AND ti.oid = tt.elemtype)
        OR (tt.attrtypoids IS NOT NULL AND ti.oid = any(tt.attrtypoids))
        OR (tt.range_subtype IS NOT NULL AND ti.oid = tt.range_subtype)
        OR (tt.basetype IS NOT NULL AND ti.oid = tt.basetype)
)
SELECT DISTINCT *, basetype::regtype::text AS basetype_name, elemtype::regtype::text AS elemtype_name, range_subtype::regtype::text AS range_subtype_name
FROM typeinfo_tree
ORDER BY depth DESC
-- @case node_postgres_param_cast
SELECT $1::text AS name, $2::int AS n
-- @case information_schema_columns
SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position
-- @case json_ops
SELECT data->>'name', jsonb_path_query(data, '$.items[*] ? (@.qty > 1)') FROM documents WHERE data @> '{"kind":"invoice"}'
-- @case gen_random_uuid
INSERT INTO events (id, kind, payload) VALUES (gen_random_uuid(), 'created', '{}'::jsonb)
-- @case string_with_escape_syntax
SELECT E'line1\nline2', U&'d\0061t\+000061'
-- @case dollar_quoted_literal
SELECT $tag$ SET app.current_organization_id = 'x' $tag$ AS text
-- @case truncate_table
TRUNCATE TABLE tmp_ids
-- @case create_view_plain
CREATE TEMP VIEW active_projects AS SELECT * FROM projects WHERE NOT archived
-- @case vacuum_table
VACUUM (ANALYZE) projects
-- @case set_session_authorization_default
SET SESSION AUTHORIZATION DEFAULT
-- @case set_transaction_snapshot
SET TRANSACTION SNAPSHOT '00000003-0000001B-1'
-- @case qualified_current_setting
SELECT pg_catalog.current_setting('app.current_organization_id')
-- @case exists_over_pg_settings
SELECT * FROM projects WHERE EXISTS (SELECT 1 FROM pg_settings s WHERE s.name = 'work_mem')
-- @case listen_several_channels [rewrite]
UNLISTEN *; LISTEN a; LISTEN b
-- @case advisory_unlock_own_lock
SELECT pg_advisory_unlock(1)
-- @case lock_table_row_exclusive
BEGIN; LOCK TABLE projects IN ROW EXCLUSIVE MODE; COMMIT
-- @case lock_table_access_share
BEGIN; LOCK TABLE projects IN ACCESS SHARE MODE; LOCK TABLE projects IN ROW SHARE MODE; COMMIT
-- @case crlf_line_endings [hex]
2d2d206c6973742070726f6a656374730d0a53454c4543542069642c0d0a202020202020206e616d65202d2d20746865206e616d650d0a202046524f4d2070726f6a656374730d0a
-- @case cr_comment_then_notify_is_scoped [rewrite] [hex]
2d2d20780d2f2a0a53454c454354202a2f204e4f54494659206a6f62732c20277827
-- @case pg_notify_function [rewrite]
SELECT pg_notify('jobs', 'payload')
-- @case pg_notify_qualified_forged_prefix [rewrite]
SELECT pg_catalog.pg_notify('ASNFZ4mrze8BI0VniavN7w:jobs', 'spoof')
-- @case pg_notify_parameters_postgres_js [rewrite]
select pg_notify($1, $2)
-- @case pg_notify_expression_ending_in_comment [rewrite]
SELECT pg_notify('jo' || 'bs' -- channel
, 'x'), pg_notify((SELECT 'a'), ARRAY['x', 'y']::text)
