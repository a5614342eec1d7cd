-- Attempts the guard must refuse. Each case starts with a line
-- `-- @case <name> [class N] [code XXXXX] [hex]`; the body runs to the next
-- `-- @case` line (trailing blank lines removed). The expected SQLSTATE is
-- 42501 unless `[code ...]` says otherwise. `[hex]` bodies are hex-encoded
-- bytes (for input that is not valid UTF-8). Classes follow docs/threat-model.md:
-- 1 protected settings, 2 role changes, 3 set_config, 4 lexing settings and
-- undecodable input, 5 code the parser cannot see, 6 fast path (tested
-- separately: it is a message, not SQL), 7 cross-tenant side channels.

-- @case set_protected_plain [class 1]
SET app.current_organization_id = '00000000-0000-0000-0000-000000000002'
-- @case set_protected_user [class 1]
SET app.current_user_id TO '00000000-0000-0000-0000-000000000002'
-- @case set_local_protected [class 1]
SET LOCAL app.current_organization_id = '00000000-0000-0000-0000-000000000002'
-- @case set_session_protected [class 1]
SET SESSION app.current_organization_id = '00000000-0000-0000-0000-000000000002'
-- @case set_protected_to_default [class 1]
SET app.current_organization_id TO DEFAULT
-- @case reset_protected [class 1]
RESET app.current_organization_id
-- @case set_protected_quoted_mixed_case [class 1]
SET "App"."Current_Organization_Id" = '00000000-0000-0000-0000-000000000002'
-- @case set_protected_single_quoted_ident [class 1]
SET "app.current_organization_id" = '00000000-0000-0000-0000-000000000002'
-- @case set_protected_upper_unquoted [class 1]
SET APP.CURRENT_ORGANIZATION_ID = '00000000-0000-0000-0000-000000000002'
-- @case set_protected_unicode_escape [class 1]
SET U&"\0061pp".U&"current\005forganization_id" = '00000000-0000-0000-0000-000000000002'
-- @case set_protected_spaced_dot [class 1]
SET app . current_organization_id = '00000000-0000-0000-0000-000000000002'
-- @case set_local_protected_inside_transaction [class 1]
BEGIN; SET LOCAL app.current_organization_id = '00000000-0000-0000-0000-000000000002'; SELECT * FROM projects; COMMIT
-- @case second_statement_sets_protected [class 1]
SELECT 1; SET app.current_user_id = '00000000-0000-0000-0000-000000000002'
-- @case alter_function_set_protected [class 1]
ALTER FUNCTION public.touch() SET app.current_organization_id = '00000000-0000-0000-0000-000000000002'
-- @case alter_function_set_protected_from_current [class 1]
ALTER FUNCTION public.touch() SET app.current_organization_id FROM CURRENT
-- @case update_pg_settings [class 1]
UPDATE pg_settings SET setting = '00000000-0000-0000-0000-000000000002' WHERE name = 'app.current_organization_id'
-- @case update_pg_settings_in_cte [class 1]
WITH u AS (UPDATE pg_catalog.pg_settings SET setting = 'x' WHERE name = 'app.current_user_id' RETURNING name) SELECT * FROM u
-- @case view_over_pg_settings [class 1]
CREATE TEMP VIEW s AS SELECT * FROM pg_settings
-- @case set_role_superuser [class 2]
SET ROLE postgres
-- @case set_role_quoted [class 2]
SET ROLE 'tenant_owner'
-- @case set_local_role [class 2]
SET LOCAL ROLE tenant_owner
-- @case set_session_role [class 2]
SET SESSION ROLE tenant_owner
-- @case set_role_generic_form [class 2]
SET "ROLE" TO tenant_owner
-- @case set_role_none_uppercase_string [class 2]
SET ROLE 'NONE'
-- @case set_session_authorization [class 2]
SET SESSION AUTHORIZATION postgres
-- @case set_session_authorization_string [class 2]
SET SESSION AUTHORIZATION 'tenant_owner'
-- @case set_config_role [class 2]
SELECT set_config('role', 'postgres', false)
-- @case set_config_role_upper [class 2]
SELECT set_config('ROLE', 'tenant_owner', true)
-- @case set_config_session_authorization [class 2]
SELECT set_config('session_authorization', 'postgres', false)
-- @case alter_function_set_role [class 2]
ALTER FUNCTION public.touch() SET role = 'tenant_owner'
-- @case create_role [class 2]
CREATE ROLE intruder LOGIN SUPERUSER
-- @case grant_role_to_self [class 2]
GRANT tenant_owner TO CURRENT_USER
-- @case alter_role_bypassrls [class 2]
ALTER ROLE CURRENT_USER BYPASSRLS
-- @case set_config_plain [class 3]
SELECT set_config('app.current_organization_id', '00000000-0000-0000-0000-000000000002', false)
-- @case set_config_schema_qualified [class 3]
SELECT pg_catalog.set_config('app.current_organization_id', 'x', false)
-- @case set_config_quoted_schema_and_name [class 3]
SELECT "pg_catalog"."set_config"('app.current_organization_id', 'x', false)
-- @case set_config_upper_name [class 3]
SELECT set_config('APP.CURRENT_ORGANIZATION_ID', 'x', false)
-- @case set_config_escape_string_name [class 3]
SELECT set_config(E'app.current\x5forganization_id', 'x', false)
-- @case set_config_unicode_string_name [class 3]
SELECT set_config(U&'app.current\005forganization_id', 'x', false)
-- @case set_config_in_cte [class 3]
WITH x AS (SELECT set_config('app.current_organization_id', 'x', false)) SELECT * FROM x
-- @case set_config_in_subquery [class 3]
SELECT * FROM (SELECT set_config('app.current_organization_id', 'x', false)) s
-- @case set_config_in_values [class 3]
VALUES (set_config('app.current_organization_id', 'x', false))
-- @case set_config_in_returning [class 3]
INSERT INTO projects (name) VALUES ('p') RETURNING set_config('app.current_organization_id', 'x', false)
-- @case set_config_in_array [class 3]
SELECT ARRAY[set_config('app.current_organization_id', 'x', false)]
-- @case set_config_in_prepare [class 3]
PREPARE p AS SELECT set_config('app.current_organization_id', 'x', false)
-- @case set_config_in_explain_analyze [class 3]
EXPLAIN ANALYZE SELECT set_config('app.current_organization_id', 'x', false)
-- @case set_config_in_declare_cursor [class 3]
DECLARE c CURSOR FOR SELECT set_config('app.current_organization_id', 'x', false)
-- @case set_config_in_create_table_as [class 3]
CREATE TEMP TABLE t2 AS SELECT set_config('app.current_organization_id', 'x', false)
-- @case set_config_in_copy_query [class 3]
COPY (SELECT set_config('app.current_organization_id', 'x', false)) TO STDOUT
-- @case set_config_in_case [class 3]
SELECT CASE WHEN true THEN set_config('app.current_organization_id', 'x', false) END
-- @case set_config_in_order_by [class 3]
SELECT 1 ORDER BY set_config('app.current_organization_id', 'x', false)
-- @case set_config_in_lateral [class 3]
SELECT * FROM projects p, LATERAL (SELECT set_config('app.current_organization_id', 'x', false)) x
-- @case set_config_in_where [class 3]
SELECT count(*) FROM projects WHERE set_config('app.current_organization_id', 'x', false) IS NOT NULL
-- @case set_config_in_from_function [class 3]
SELECT * FROM set_config('app.current_organization_id', 'x', false)
-- @case set_config_in_column_default [class 3]
CREATE TEMP TABLE t3 (a text DEFAULT set_config('app.current_organization_id', 'x', false))
-- @case set_config_in_function_default_arg [class 3]
CREATE FUNCTION f(a text DEFAULT set_config('app.current_organization_id', 'x', false)) RETURNS text LANGUAGE sql AS 'SELECT a'
-- @case set_config_in_rule [class 3]
CREATE RULE r AS ON INSERT TO projects DO ALSO SELECT set_config('app.current_organization_id', 'x', false)
-- @case set_config_in_merge [class 3]
MERGE INTO projects p USING (VALUES (1)) v(x) ON false WHEN NOT MATCHED THEN INSERT (name) VALUES (set_config('app.current_organization_id', 'x', false))
-- @case set_config_name_concat [class 3]
SELECT set_config(concat('app.current_', 'organization_id'), 'x', false)
-- @case set_config_name_operator [class 3]
SELECT set_config('app.current_' || 'organization_id', 'x', false)
-- @case set_config_name_format [class 3]
SELECT set_config(format('%s.%s', 'app', 'current_organization_id'), 'x', false)
-- @case set_config_name_subquery [class 3]
SELECT set_config((SELECT 'app.current_organization_id'), 'x', false)
-- @case set_config_name_parameter [class 3]
SELECT set_config($1, $2, false)
-- @case set_config_name_varchar_truncation [class 3]
SELECT set_config('app.current_organization_idXX'::varchar(27), 'x', false)
-- @case set_config_named_arguments [class 3]
SELECT set_config(is_local => false, setting_name => 'app.current_organization_id', new_value => 'x')
-- @case set_config_variadic [class 3]
SELECT set_config(VARIADIC ARRAY['app.current_organization_id', 'x', 'false'])
-- @case set_config_nested_in_allowed_call [class 3]
SELECT set_config('application_name', set_config('app.current_organization_id', 'x', false), false)
-- @case set_config_comment_between_tokens [class 3]
SELECT/**/set_config/**/('app.current_organization_id',/**/'x',false)
-- @case set_config_as_cast_function [class 3]
CREATE CAST (text AS int) WITH FUNCTION set_config(text, text, boolean)
-- @case query_to_xml_runs_hidden_sql [class 3]
SELECT query_to_xml('select set_config(''app.current_organization_id'', ''x'', false)', true, false, '')
-- @case ts_stat_runs_hidden_sql [class 3]
SELECT * FROM ts_stat('SELECT set_config(''app.current_organization_id'', ''x'', false)::tsvector')
-- @case ts_rewrite_runs_hidden_sql [class 3]
SELECT ts_rewrite('a'::tsquery, 'SELECT set_config(''app.current_organization_id'', ''x'', false)::tsquery, ''b''::tsquery')
-- @case set_standard_conforming_strings_off [class 4]
SET standard_conforming_strings = off
-- @case set_local_standard_conforming_strings_off [class 4]
SET LOCAL standard_conforming_strings TO off
-- @case set_client_encoding_sql_ascii [class 4]
SET client_encoding = 'SQL_ASCII'
-- @case set_names_latin1 [class 4]
SET NAMES 'LATIN1'
-- @case set_backslash_quote [class 4]
SET backslash_quote = on
-- @case set_config_standard_conforming_strings [class 4]
SELECT set_config('standard_conforming_strings', 'off', false)
-- @case set_config_client_encoding [class 4]
SELECT set_config('client_encoding', 'SJIS', false)
-- @case alter_function_set_client_encoding [class 4]
ALTER FUNCTION public.touch() SET client_encoding = 'GBK'
-- @case invalid_utf8 [class 4] [code 22021] [hex]
53454c45435420 27 c0a7 27 3b20534554206170702e63757272656e745f6f7267616e697a6174696f6e5f6964203d20277827
-- @case invalid_utf8_lone_continuation [class 4] [code 22021] [hex]
53454c4543542027 80 27
-- @case nul_byte_hides_second_statement [class 4] [code 22021] [hex]
53454c4543542031 00 3b20534554206170702e63757272656e745f6f7267616e697a6174696f6e5f6964203d20277827
-- @case unparsable_keyword [class 4] [code 42601]
SELEC set_config('app.current_organization_id', 'x', false)
-- @case unterminated_literal [class 4] [code 42601]
SELECT 'abc; SET app.current_organization_id = 'x'
-- @case unterminated_dollar_quote [class 4] [code 42601]
SELECT $a$ hidden; SET app.current_organization_id = 'x'
-- @case do_block [class 5]
DO $$ BEGIN PERFORM set_config('app.current_organization_id', 'x', false); END $$
-- @case do_block_innocent_looking [class 5]
DO LANGUAGE plpgsql $$ BEGIN RAISE NOTICE 'hello'; END $$
-- @case create_function_sql_body [class 5]
CREATE FUNCTION evil() RETURNS text LANGUAGE sql AS $$ SELECT set_config('app.current_organization_id', 'x', false) $$
-- @case create_function_set_clause [class 5]
CREATE OR REPLACE FUNCTION evil() RETURNS int LANGUAGE sql SECURITY DEFINER SET app.current_organization_id = 'x' AS 'SELECT 1'
-- @case create_function_standard_body [class 5]
CREATE FUNCTION evil2() RETURNS int LANGUAGE sql RETURN 1
-- @case create_procedure [class 5]
CREATE PROCEDURE evil_proc() LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'SET ROLE postgres'; END $$
-- @case alter_role_set_protected [class 5]
ALTER ROLE tenant_app SET app.current_organization_id = '00000000-0000-0000-0000-000000000002'
-- @case alter_user_current_set [class 5]
ALTER USER CURRENT_USER SET search_path = evil, public
-- @case alter_role_in_database_set [class 5]
ALTER ROLE ALL IN DATABASE app SET app.current_user_id = 'x'
-- @case alter_database_set [class 5]
ALTER DATABASE app SET app.current_organization_id = '00000000-0000-0000-0000-000000000002'
-- @case alter_system_set [class 5]
ALTER SYSTEM SET app.current_organization_id = '00000000-0000-0000-0000-000000000002'
-- @case load_library [class 5]
LOAD 'auto_explain'
-- @case create_extension [class 5]
CREATE EXTENSION IF NOT EXISTS dblink
-- @case pg_stat_activity_select [class 7]
SELECT query FROM pg_stat_activity WHERE pid <> pg_backend_pid()
-- @case pg_stat_activity_qualified [class 7]
SELECT * FROM pg_catalog.pg_stat_activity
-- @case pg_stat_activity_table_form [class 7]
TABLE pg_stat_activity
-- @case pg_stat_get_activity_function [class 7]
SELECT * FROM pg_stat_get_activity(NULL)
-- @case pg_stat_backend_activity [class 7]
SELECT pg_stat_get_backend_activity(s.backendid) FROM pg_stat_get_backend_idset() AS s(backendid)
-- @case pg_stat_statements_view [class 7]
SELECT query, calls FROM pg_stat_statements
-- @case table_to_xml_reads_activity [class 7]
SELECT table_to_xml('pg_stat_activity', true, false, '')
-- @case terminate_backend [class 7]
SELECT pg_terminate_backend(12345)
-- @case cancel_backend_all [class 7]
SELECT pg_cancel_backend(pid) FROM pg_locks
-- @case terminate_backend_quoted_qualified [class 7]
SELECT pg_catalog."pg_terminate_backend"(12345)
-- @case operator_over_terminate_backend [class 7]
CREATE OPERATOR !!! (RIGHTARG = integer, FUNCTION = pg_terminate_backend)
-- @case lo_import_file [class 7]
SELECT lo_import('/etc/passwd')
-- @case lo_get_other_tenant [class 7]
SELECT lo_get(16400)
-- @case loread_open [class 7]
SELECT loread(lo_open(16400, 262144), 8192)
-- @case lo_create [class 7]
SELECT lo_create(0)
-- @case largeobject_metadata [class 7]
SELECT oid, lomowner FROM pg_largeobject_metadata
-- @case grant_on_large_object [class 7]
GRANT SELECT ON LARGE OBJECT 16400 TO PUBLIC
-- @case comment_on_large_object [class 7]
COMMENT ON LARGE OBJECT 16400 IS 'mine'
-- @case alter_large_object_owner [class 7]
ALTER LARGE OBJECT 16400 OWNER TO CURRENT_USER
-- @case advisory_lock [class 7]
SELECT pg_advisory_lock(1)
-- @case try_advisory_lock_two_keys [class 7]
SELECT pg_try_advisory_lock(1, 2)
-- @case advisory_xact_lock [class 7]
SELECT pg_advisory_xact_lock(42)
-- @case advisory_lock_shared_qualified [class 7]
SELECT pg_catalog.pg_advisory_lock_shared(7)
-- @case pg_notify_in_view [class 7]
CREATE VIEW notify_later AS SELECT pg_notify('jobs', 'payload')
-- @case pg_notify_in_rule [class 7]
CREATE RULE r AS ON INSERT TO projects DO ALSO SELECT pg_notify('jobs', 'x')
-- @case pg_notify_in_policy [class 7]
CREATE POLICY p ON projects USING (pg_notify('jobs', 'x') IS NULL)
-- @case pg_notify_in_default [class 7]
ALTER TABLE projects ALTER COLUMN name SET DEFAULT pg_notify('jobs', 'x')
-- @case pg_notify_variadic [class 7]
SELECT pg_notify(VARIADIC ARRAY['jobs', 'x'])
-- @case pg_notify_named_arguments [class 7]
SELECT pg_notify(channel => 'jobs', payload => 'x')
-- @case pg_notify_one_argument [class 7]
SELECT pg_notify('jobs')
-- @case pg_notify_as_window [class 7]
SELECT pg_notify('jobs', 'x') OVER ()
-- @case pg_notify_as_aggregate_transition [class 7]
CREATE AGGREGATE agg_notify(text, text) (SFUNC = pg_notify, STYPE = text)
-- @case notify_inside_rule [class 7]
CREATE RULE r2 AS ON INSERT TO projects DO ALSO NOTIFY jobs
-- @case listen_channel_too_long [class 7]
LISTEN a_channel_name_that_is_longer_than_forty_bytes_x
-- @case notify_channel_too_long_second_statement [class 7]
SELECT 1; NOTIFY a_channel_name_that_is_longer_than_forty_bytes_x
-- @case set_config_via_call [class 3]
CALL set_config('app.current_organization_id', 'x', false)
-- @case set_config_in_alter_column_default [class 3]
ALTER TABLE projects ALTER COLUMN name SET DEFAULT set_config('app.current_organization_id', 'x', false)
-- @case set_config_role_in_policy [class 2]
CREATE POLICY p ON projects USING (set_config('role', 'tenant_owner', false) IS NULL)
-- @case set_config_in_rows_from [class 3]
SELECT * FROM ROWS FROM (set_config('app.current_organization_id', 'x', false))
-- @case set_config_in_xmltable_path [class 3]
SELECT * FROM XMLTABLE('/a' PASSING xmlparse(document '<a/>') COLUMNS x text PATH set_config('app.current_organization_id', 'x', false))
-- @case set_config_in_json_constructor [class 3]
SELECT JSON_OBJECT('a': set_config('app.current_organization_id', 'x', false))
-- @case set_config_as_window_call [class 3]
SELECT set_config('app.current_organization_id', 'x', false) OVER ()
-- @case set_config_as_aggregate_transition [class 3]
CREATE AGGREGATE agg(text) (SFUNC = set_config, STYPE = text)
-- @case alter_function_reset_protected [class 1]
ALTER FUNCTION public.touch() RESET app.current_organization_id
-- @case insert_into_pg_settings [class 1]
INSERT INTO pg_settings (name, setting) VALUES ('app.current_organization_id', 'x')
-- @case merge_into_pg_settings [class 1]
MERGE INTO pg_settings s USING (SELECT 1) v ON true WHEN MATCHED THEN UPDATE SET setting = 'x'
-- @case trigger_calls_terminate_backend [class 7]
CREATE TRIGGER t BEFORE INSERT ON projects FOR EACH ROW EXECUTE FUNCTION pg_terminate_backend()
-- @case security_label_on_large_object [class 7]
SECURITY LABEL ON LARGE OBJECT 16400 IS 'x'
-- @case default_privileges_on_large_objects [class 7]
ALTER DEFAULT PRIVILEGES GRANT SELECT ON LARGE OBJECTS TO PUBLIC
-- @case dblink_exec_hidden_sql [class 5]
SELECT dblink_exec('dbname=app', 'SET ROLE postgres')
-- @case pg_locks_lists_other_sessions [class 7]
SELECT locktype, objid, pid FROM pg_locks WHERE locktype = 'advisory'
-- @case cr_comment_hides_set_organization [class 1] [hex]
2d2d20780d2f2a0a53454c454354202a2f20534554206170702e63757272656e745f6f7267616e697a6174696f6e5f6964203d202762626262626262622d303030302d343030302d383030302d30303030303030303030303127
-- @case cr_comment_hides_set_user [class 1] [hex]
2d2d20780d2f2a0a53454c454354202a2f20534554206170702e63757272656e745f757365725f6964203d202762626262626262622d303030302d343030302d383030302d30303030303030303030303127
-- @case cr_comment_hides_set_role [class 2] [hex]
2d2d20780d2f2a0a53454c454354202a2f2053455420524f4c4520706f737467726573
-- @case cr_comment_hides_lexing_setting [class 4] [hex]
2d2d20780d2f2a0a53454c454354202a2f20534554207374616e646172645f636f6e666f726d696e675f737472696e6773203d206f6666
-- @case cr_comment_hides_alter_role_set [class 1] [hex]
2d2d20780d2f2a0a53454c454354202a2f20414c54455220524f4c452043555252454e545f5553455220534554206170702e63757272656e745f6f7267616e697a6174696f6e5f6964203d202762626262626262622d303030302d343030302d383030302d30303030303030303030303127
-- @case cr_comment_hides_alter_role_password [class 2] [hex]
2d2d20780d2f2a0a53454c454354202a2f20414c54455220524f4c452043555252454e545f555345522050415353574f524420277827
-- @case cr_only_comment_hides_set [class 1] [hex]
2d2d0d2f2a2a2f534554206170702e63757272656e745f6f7267616e697a6174696f6e5f6964203d202762626262626262622d303030302d343030302d383030302d30303030303030303030303127
-- @case cr_comment_in_pipeline_of_selects [class 1] [hex]
53454c4543542031202d2d20780d3b20534554206170702e63757272656e745f6f7267616e697a6174696f6e5f6964203d202762626262626262622d303030302d343030302d383030302d30303030303030303030303127
-- @case form_feed_before_set [class 1] [hex]
0c534554206170702e63757272656e745f6f7267616e697a6174696f6e5f6964203d202762626262626262622d303030302d343030302d383030302d30303030303030303030303127
-- @case vertical_tab_before_set [class 1] [hex]
0b534554206170702e63757272656e745f6f7267616e697a6174696f6e5f6964203d202762626262626262622d303030302d343030302d383030302d30303030303030303030303127
-- @case lock_table_access_exclusive [class 7]
BEGIN; LOCK TABLE projects IN ACCESS EXCLUSIVE MODE; COMMIT
-- @case lock_table_default_mode [class 7]
BEGIN; LOCK projects; COMMIT
-- @case lock_table_share_mode [class 7]
BEGIN; LOCK TABLE ONLY projects IN SHARE MODE NOWAIT; COMMIT
-- @case lock_table_share_update_exclusive [class 7]
BEGIN; LOCK TABLE projects IN SHARE UPDATE EXCLUSIVE MODE; COMMIT
-- @case prepare_transaction [class 7]
BEGIN; PREPARE TRANSACTION 'pgtp_x'
-- @case commit_prepared [class 7]
COMMIT PREPARED 'pgtp_x'
-- @case rollback_prepared [class 7]
ROLLBACK PREPARED 'pgtp_x'
-- @case read_prepared_xacts [class 7]
SELECT gid, owner FROM pg_prepared_xacts
-- @case explain_estimates [class 7]
EXPLAIN SELECT * FROM projects WHERE name = 'x'
-- @case explain_analyze_rows_removed [class 7]
EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM projects
-- @case stat_user_tables_counts_rows [class 7]
SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'projects'
-- @case statio_user_tables [class 7]
SELECT * FROM pg_statio_user_tables
-- @case stat_get_live_tuples [class 7]
SELECT pg_stat_get_live_tuples('projects'::regclass)
-- @case stat_get_numscans_quoted [class 7]
SELECT pg_catalog."pg_stat_get_numscans"('projects'::regclass)
-- @case reltuples_estimate [class 7]
SELECT reltuples, relpages FROM pg_class WHERE relname = 'projects'
-- @case relallvisible [class 7]
SELECT c.relallvisible FROM pg_class c
-- @case crosstab_runs_sql_text [class 5]
SELECT * FROM crosstab('SELECT set_config(''role'', ''postgres'', false), 1, 1') AS t(a text, b int)
-- @case crosstab3_runs_sql_text [class 5]
SELECT * FROM public.crosstab3('SELECT 1')
-- @case connectby_runs_sql_text [class 5]
SELECT * FROM connectby('projects', 'id', 'parent_id', '1', 0) AS t(id text, parent text, level int)
-- @case xpath_table_runs_sql_text [class 5]
SELECT * FROM xpath_table('id', 'doc', 'projects', '/a', 'true') AS t(id int, a text)
-- @case pgrowlocks_shows_other_backends [class 7]
SELECT * FROM pgrowlocks('projects')
-- @case isolation_test_blocked [class 7]
SELECT pg_isolation_test_session_is_blocked(1, '{2}')
-- @case relation_size_counts_every_tenant [class 7]
SELECT pg_total_relation_size('projects'), pg_relation_size('agent_instances')
