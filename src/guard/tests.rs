//! Unit tests of the guard internals; the corpus tests live in
//! `tests/guard_unit.rs`.

use super::*;
use crate::error::SqlState;

fn guard() -> Guard {
    match Guard::new(&GuardConfig::default()) {
        Ok(g) => g,
        Err(e) => panic!("default config rejected: {e}"),
    }
}

fn scope() -> TenantScope {
    TenantScope::new(uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef))
}

fn code(v: &Verdict) -> Option<SqlState> {
    match v {
        Verdict::Deny(e) => Some(e.code),
        _ => None,
    }
}

#[test]
fn plain_select_allowed() {
    let g = guard();
    assert_eq!(g.check_query(b"SELECT 1", &scope()), Verdict::Allow);
}

#[test]
fn second_statement_set_refused_whole_message() {
    let g = guard();
    let v = g.check_query(b"SELECT 1; SET app.current_organization_id = 'x'", &scope());
    assert_eq!(code(&v), Some(SqlState::InsufficientPrivilege));
}

#[test]
fn listen_in_multi_statement_rewrites_only_its_span() {
    let g = guard();
    let s = scope();
    let v = g.check_query(b"SELECT 1 ;  LISTEN Jobs ; SELECT 'x'", &s);
    let expected = format!(
        "SELECT 1 ;  LISTEN {}; SELECT 'x'",
        notify::quote_ident(&s.scoped_channel("jobs"))
    );
    assert_eq!(v, Verdict::Rewrite(expected));
}

#[test]
fn notify_payload_quoted() {
    let g = guard();
    let s = scope();
    let v = g.check_query(b"NOTIFY \"a\"\"b\", 'it''s'", &s);
    let expected = format!("NOTIFY {}, 'it''s'", notify::quote_ident(&s.scoped_channel("a\"b")));
    assert_eq!(v, Verdict::Rewrite(expected));
}

#[test]
fn unscope_drops_other_tenants() {
    let a = scope();
    let b = TenantScope::new(uuid::Uuid::from_u128(7));
    let up = a.scoped_channel("jobs");
    assert_eq!(a.unscope_channel(&up), Some("jobs"));
    assert_eq!(b.unscope_channel(&up), None);
    assert_eq!(a.unscope_channel("jobs"), None);
}

#[test]
fn cache_serves_repeated_statement() {
    let g = guard();
    let s = scope();
    let cached = |n: usize| g.cache.as_ref().is_some_and(|c| c.len() == n);
    // One plain statement is decided from its bytes and never cached.
    for _ in 0..3 {
        assert_eq!(g.check_parse(b"SELECT * FROM t WHERE id = $1", &s), Verdict::Allow);
    }
    assert!(cached(0));
    // Statements that need the parser are cached, allowed or refused.
    for _ in 0..3 {
        assert_eq!(g.check_query(b"SELECT 1; SELECT pg_backend_pid()", &s), Verdict::Allow);
        assert_eq!(
            code(&g.check_query(b"SELECT 1; SET ROLE postgres", &s)),
            Some(SqlState::InsufficientPrivilege)
        );
    }
    assert!(cached(2));
}

#[test]
fn config_always_protects_pinned_settings() {
    let cfg = GuardConfig {
        protected_settings: vec!["App.Other".into()],
        ..GuardConfig::default()
    };
    let Ok(g) = Guard::new(&cfg) else {
        panic!("config rejected")
    };
    for sql in [
        "SET app.other = 1",
        "SET app.current_organization_id = 'x'",
        "SET app.current_user_id = 'x'",
    ] {
        assert_eq!(
            code(&g.check_query(sql.as_bytes(), &scope())),
            Some(SqlState::InsufficientPrivilege),
            "{sql}"
        );
    }
}

#[test]
fn bad_config_name_rejected() {
    let cfg = GuardConfig {
        protected_settings: vec!["".into()],
        ..GuardConfig::default()
    };
    assert!(Guard::new(&cfg).is_err());
}

#[test]
fn guard_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Guard>();
    check::<TenantScope>();
}

#[path = "../../tests/guard_corpus/mod.rs"]
mod guard_corpus;

/// Texts to compare the prefilter and the walk on: both corpora, plus
/// variants of each (case changes, wrapped in a query, commented).
fn comparison_texts() -> Vec<String> {
    let mut out = Vec::new();
    for case in guard_corpus::must_pass().into_iter().chain(guard_corpus::attacks()) {
        let Some(sql) = case.sql_str() else { continue };
        out.push(sql.to_owned());
        out.push(sql.to_ascii_uppercase());
        out.push(sql.to_ascii_lowercase());
        out.push(format!("SELECT 1; {sql}"));
        out.push(format!("/* x */ ({sql})"));
        out.push(format!("WITH q AS ({sql}) SELECT * FROM q"));
        out.push(format!("SELECT * FROM t WHERE x IN ({sql})"));
    }
    out
}

/// How the prefilter passed a text.
#[derive(PartialEq)]
enum Passed {
    /// By the parse-free path; `unparsable`: the walk finds a syntax error.
    WithoutParse { unparsable: bool },
    /// By PostgreSQL's parser splitting it.
    WithParse,
}

/// Which prefilter path passes `text`, if any. Panics if the full walk
/// refuses or rewrites a text the prefilter passed, except that the
/// parse-free path may pass a text that does not parse (the server refuses
/// it with its own syntax error).
fn prefilter_agrees_with_walk(g: &Guard, text: &str) -> Option<Passed> {
    let lexical = prefilter::one_plain_statement(text);
    if !lexical && (text.contains('\0') || !prefilter::plainly_safe(text)) {
        return None;
    }
    let mut unparsable = false;
    match g.walk_text(text) {
        Checked::Verdict(Cached::Allow(_)) => {}
        Checked::Verdict(Cached::Deny(e)) if lexical && e.code == SqlState::SyntaxError => unparsable = true,
        Checked::Verdict(Cached::Deny(e)) => {
            panic!("prefilter passed {text:?}, walk refused: {}", e.message)
        }
        Checked::NeedsRewrite(..) => panic!("prefilter passed {text:?}, walk rewrites it"),
    }
    Some(if lexical {
        Passed::WithoutParse { unparsable }
    } else {
        Passed::WithParse
    })
}

#[test]
fn prefilter_never_passes_what_the_walk_refuses() {
    let g = guard();
    let mut passed = 0usize;
    let mut passed_without_parse = 0usize;
    for text in comparison_texts() {
        let Some(how) = prefilter_agrees_with_walk(&g, &text) else {
            continue;
        };
        passed += 1;
        passed_without_parse += usize::from(how != Passed::WithParse);
    }
    // Both paths must actually take part (plain queries skip the walk).
    assert!(passed > 50, "prefilter passed only {passed} texts");
    assert!(
        passed_without_parse > 50,
        "the parse-free path passed only {passed_without_parse} texts"
    );
}

#[test]
fn prefilter_refuses_nothing_itself() {
    // The prefilter only ever answers "plainly safe" or "don't know": every
    // attack must still be refused with the prefilter in the path.
    let g = guard();
    for case in guard_corpus::attacks() {
        assert!(
            matches!(g.check_query(&case.sql, &scope()), Verdict::Deny(_)),
            "{}",
            case.name
        );
    }
}

#[test]
fn deep_expressions_up_to_the_limit_pass_deeper_ones_are_refused() {
    let g = guard();
    // Names pg_* so the prefilter declines and the full parse runs.
    let chain = |n: usize| format!("SELECT {}", vec!["pg_backend_pid()"; n].join(" + "));
    assert_eq!(g.check_query(chain(400).as_bytes(), &scope()), Verdict::Allow);
    let too_deep = chain(usize::try_from(super::flat::MAX_DEPTH).unwrap_or(1000) + 100);
    assert_eq!(
        code(&g.check_query(too_deep.as_bytes(), &scope())),
        Some(SqlState::ProgramLimitExceeded)
    );
    // Far past the limit: PostgreSQL's own stack check, not a crash.
    assert_eq!(
        code(&g.check_query(chain(20_000).as_bytes(), &scope())),
        Some(SqlState::ProgramLimitExceeded)
    );
}

#[test]
fn pg_notify_rewrites_are_never_deeper_than_the_rewrite_path_reads() {
    // Each prefix `+` nests the channel argument one level deeper; the
    // rewrite adds two more. Whatever is sent must decode into the protobuf
    // tree the rewrite path reads; an argument right at that limit is
    // refused as too deep, not sent deeper.
    let g = guard();
    let s = scope();
    let mut refused_only_after_the_rewrite = 0;
    for n in 0..120 {
        let sql = format!("SELECT pg_notify({}x, 'p')", "+".repeat(n));
        match g.check_query(sql.as_bytes(), &s) {
            Verdict::Rewrite(new) => {
                assert!(parse::parse(&new).is_ok(), "{n}: {new:?}");
                assert!(
                    new.contains(&format!("('{}' || ({}x\n))", s.scoped_channel(""), "+".repeat(n))),
                    "{new:?}"
                );
            }
            Verdict::Deny(e) => {
                assert_eq!(e.code, SqlState::ProgramLimitExceeded, "{n}: {e:?}");
                if parse::parse(&sql).is_ok() {
                    refused_only_after_the_rewrite += 1;
                }
            }
            Verdict::Allow => panic!("{n}: pg_notify allowed unscoped"),
        }
    }
    assert!(refused_only_after_the_rewrite > 0);
    assert!(matches!(
        g.check_query(b"SELECT pg_notify(+++x, 'p')", &s),
        Verdict::Rewrite(_)
    ));
}

/// Statements of many node kinds beyond the two corpora, for the check that
/// the C writer and the protobuf tree agree.
const NODE_KINDS: &[&str] = &[
    "CREATE TABLE t (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), n int NOT NULL CHECK (n > 0) \
     REFERENCES u(id) ON DELETE CASCADE, g int GENERATED ALWAYS AS (n * 2) STORED, UNIQUE (n, g)) \
     PARTITION BY RANGE (n)",
    "CREATE TABLE p1 PARTITION OF t FOR VALUES FROM (1) TO (10) WITH (fillfactor = 70)",
    "CREATE UNLOGGED TABLE IF NOT EXISTS x AS SELECT 1 AS a WITH NO DATA",
    "ALTER TABLE t ADD COLUMN c text COLLATE \"C\", ALTER COLUMN n SET DEFAULT 3, DROP CONSTRAINT k, \
     ENABLE ROW LEVEL SECURITY, ALTER COLUMN n TYPE bigint USING n::bigint",
    "ALTER TABLE t ALTER CONSTRAINT fk DEFERRABLE INITIALLY DEFERRED",
    "CREATE UNIQUE INDEX CONCURRENTLY i ON t USING btree (lower(c) DESC NULLS LAST) INCLUDE (n) WHERE n > 1",
    "CREATE MATERIALIZED VIEW mv AS SELECT count(*) FROM t; REFRESH MATERIALIZED VIEW CONCURRENTLY mv",
    "CREATE OR REPLACE VIEW v WITH (security_barrier) AS SELECT * FROM t WITH CASCADED CHECK OPTION",
    "GRANT SELECT (n), UPDATE ON t TO a WITH GRANT OPTION; REVOKE ALL ON SCHEMA s FROM PUBLIC CASCADE",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA s GRANT SELECT ON TABLES TO r",
    "CREATE POLICY p ON t AS RESTRICTIVE FOR UPDATE TO r USING (n = 1) WITH CHECK (n = 2)",
    "CREATE TYPE e AS ENUM ('a', 'b'); CREATE TYPE c AS (x int, y text); CREATE TYPE r AS RANGE (subtype = int4)",
    "CREATE DOMAIN d AS int CHECK (VALUE > 0) NOT NULL",
    "CREATE SEQUENCE s INCREMENT 2 MINVALUE 1 CACHE 10 OWNED BY t.n; ALTER SEQUENCE s RESTART WITH 5",
    "COPY t (n) FROM STDIN WITH (FORMAT csv, HEADER true, FORCE_NULL (n))",
    "COPY (SELECT * FROM t WHERE n > $1) TO STDOUT",
    "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM t",
    "VACUUM (VERBOSE, ANALYZE) t (n); ANALYZE t; CLUSTER t USING i; REINDEX TABLE CONCURRENTLY t",
    "LOCK TABLE t IN SHARE ROW EXCLUSIVE MODE NOWAIT; TRUNCATE t, u RESTART IDENTITY CASCADE",
    "CREATE SCHEMA s AUTHORIZATION r CREATE TABLE q (a int)",
    "CREATE TRIGGER tr BEFORE INSERT OR UPDATE OF n ON t REFERENCING NEW TABLE AS nt FOR EACH STATEMENT \
     WHEN (true) EXECUTE FUNCTION f()",
    "CREATE RULE r AS ON INSERT TO t WHERE NEW.n > 0 DO ALSO NOTIFY t",
    "CREATE FUNCTION f(a int DEFAULT 1, OUT b int) RETURNS SETOF record LANGUAGE sql STABLE STRICT \
     SECURITY DEFINER SET search_path = pg_catalog COST 10 ROWS 5 AS $$ SELECT 1 $$",
    "CREATE PROCEDURE pr(INOUT x int) LANGUAGE sql BEGIN ATOMIC SELECT 1; END; CALL pr(1)",
    "DO LANGUAGE plpgsql $$ BEGIN PERFORM 1; END $$",
    "SELECT * FROM JSON_TABLE(jsonb '[1]', '$[*]' COLUMNS (a int PATH '$', NESTED PATH '$' COLUMNS (b int PATH '$'))) jt",
    "SELECT JSON_OBJECT('a': 1 ABSENT ON NULL), JSON_ARRAYAGG(n ORDER BY n), '{}' IS JSON OBJECT, \
     JSON_VALUE(jsonb '1', '$' RETURNING int DEFAULT 0 ON ERROR), JSON_EXISTS(jsonb '1', '$')",
    "MERGE INTO t USING u ON t.id = u.id WHEN MATCHED AND u.n = 0 THEN DELETE WHEN MATCHED THEN \
     UPDATE SET n = u.n WHEN NOT MATCHED BY SOURCE THEN DELETE WHEN NOT MATCHED THEN INSERT (id, n) \
     VALUES (u.id, u.n) RETURNING merge_action(), t.*",
    "SELECT xmlelement(name x, xmlattributes(1 AS a), 'b'), xmlforest(n), xmlserialize(content '<a/>' AS text) \
     FROM XMLTABLE('/r' PASSING '<r/>' COLUMNS a int PATH 'a' DEFAULT 0)",
    "SELECT n, rank() OVER w, sum(n) FILTER (WHERE n > 0) OVER (PARTITION BY c ORDER BY n ROWS BETWEEN \
     1 PRECEDING AND CURRENT ROW EXCLUDE TIES) FROM t WINDOW w AS (ORDER BY n)",
    "SELECT a, b, count(*) FROM t GROUP BY DISTINCT GROUPING SETS ((a), CUBE (a, b), ROLLUP (b), ()) \
     HAVING count(*) > 1",
    "SELECT * FROM t TABLESAMPLE BERNOULLI (10) REPEATABLE (1), LATERAL (SELECT * FROM u WHERE u.n = t.n) x \
     FOR UPDATE OF t SKIP LOCKED",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SEARCH DEPTH FIRST BY n \
     SET ord CYCLE n SET is_cycle USING path SELECT * FROM r",
    "WITH m AS MATERIALIZED (DELETE FROM t WHERE n = 1 RETURNING *) SELECT * FROM m",
    "INSERT INTO t AS x (id, n) OVERRIDING SYSTEM VALUE VALUES (DEFAULT, 1), ($1, $2) \
     ON CONFLICT (id) WHERE n > 0 DO UPDATE SET n = EXCLUDED.n WHERE x.n < 5 RETURNING old.n, new.n",
    "INSERT INTO t SELECT * FROM u ON CONFLICT ON CONSTRAINT k DO NOTHING",
    "UPDATE t SET (a, b) = (SELECT 1, 2), c[1:2] = '{1,2}', d.e = 3 FROM u WHERE CURRENT OF cur",
    "SELECT a[1], a[1:2], (r).f, (r).*, x COLLATE \"C\", a IS DISTINCT FROM b, a BETWEEN SYMMETRIC 1 AND 2, \
     CASE WHEN a THEN 1 ELSE 2 END, CASE a WHEN 1 THEN 'x' END, COALESCE(a, b), NULLIF(a, b), \
     GREATEST(a, b), LEAST(a, b), ROW(a, b) < ROW(c, d), a IN (1, 2), a = ANY ($1), EXISTS (SELECT 1), \
     ARRAY[1, 2], ARRAY(SELECT 1), a LIKE 'x%' ESCAPE '!', a SIMILAR TO 'x', a IS NOT TRUE, a ISNULL",
    "SELECT CURRENT_DATE, CURRENT_TIMESTAMP(3), LOCALTIME, CURRENT_USER, SESSION_USER, CURRENT_ROLE, \
     CURRENT_CATALOG, CURRENT_SCHEMA, USER",
    "SELECT B'101', X'ff', 1.5e10, -7, true, false, NULL, 'x'::text, CAST('1' AS int), \
     interval '1' day, '1 hour'::interval(0), numeric(10, 2) '1.5', 9223372036854775807, 0.0",
    "SELECT extract(year FROM now()), overlay('abc' placing 'x' from 2), position('a' in 'b'), \
     substring('abc' from 1 for 2), trim(both 'x' from 'xax'), normalize('a', NFC), 'a' IS NFC NORMALIZED, \
     collation for ('a'), now() AT TIME ZONE 'UTC', now() AT LOCAL",
    "SET TIME ZONE 'UTC'; SET LOCAL statement_timeout = 5; SET search_path TO a, \"B\"; RESET ALL; \
     SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
    "PREPARE q(int) AS SELECT $1; EXECUTE q(1); DEALLOCATE ALL; DECLARE c SCROLL CURSOR WITH HOLD FOR \
     SELECT 1; FETCH BACKWARD 2 FROM c; MOVE LAST IN c; CLOSE c",
    "LISTEN a; NOTIFY a, 'p'; UNLISTEN *; DISCARD ALL; CHECKPOINT; LOAD 'x'",
    "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY, DEFERRABLE; SAVEPOINT s; ROLLBACK TO SAVEPOINT s; \
     RELEASE s; PREPARE TRANSACTION 'x'; COMMIT PREPARED 'x'; COMMIT AND CHAIN",
    "CREATE EXTENSION IF NOT EXISTS x WITH SCHEMA s VERSION '1'; ALTER EXTENSION x UPDATE; \
     ALTER EXTENSION x ADD FUNCTION f(int)",
    "CREATE SERVER s FOREIGN DATA WRAPPER w OPTIONS (host 'h'); CREATE USER MAPPING FOR r SERVER s; \
     CREATE FOREIGN TABLE ft (a int OPTIONS (c 'x')) SERVER s; IMPORT FOREIGN SCHEMA x LIMIT TO (y) \
     FROM SERVER s INTO z",
    "CREATE PUBLICATION p FOR TABLE t (n) WHERE (n > 0), TABLES IN SCHEMA s; \
     CREATE SUBSCRIPTION sub CONNECTION 'x' PUBLICATION p WITH (enabled = false)",
    "ALTER SYSTEM SET work_mem = '1MB'; CREATE STATISTICS st (ndistinct) ON a, b FROM t; \
     SECURITY LABEL FOR l ON TABLE t IS 'x'; COMMENT ON COLUMN t.n IS 'c'",
    "CREATE EVENT TRIGGER e ON ddl_command_start WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION f()",
    "CREATE AGGREGATE ag(int) (SFUNC = f, STYPE = int, INITCOND = '0'); CREATE OPERATOR === \
     (LEFTARG = int, RIGHTARG = int, FUNCTION = f); CREATE CAST (int AS text) WITH INOUT AS IMPLICIT",
    "CREATE COLLATION co (provider = icu, locale = 'und'); CREATE TEXT SEARCH CONFIGURATION tc (COPY = english); \
     CREATE CONVERSION cv FOR 'LATIN1' TO 'UTF8' FROM f",
    "ALTER TABLE t RENAME COLUMN a TO b; ALTER TABLE t OWNER TO r; ALTER FUNCTION f(int) SET SCHEMA s; \
     DROP TABLE IF EXISTS t, u CASCADE; DROP FUNCTION f(int), g()",
    "REASSIGN OWNED BY a TO b; DROP OWNED BY a; CREATE ROLE r WITH LOGIN PASSWORD 'x' VALID UNTIL 'infinity' \
     IN ROLE a; ALTER ROLE r SET search_path = s; ALTER ROLE r IN DATABASE d RESET ALL",
    "CREATE DATABASE d WITH OWNER r TEMPLATE template0; CREATE TABLESPACE ts LOCATION '/x'; \
     CREATE ACCESS METHOD am TYPE TABLE HANDLER h; CREATE TRANSFORM FOR int LANGUAGE l (FROM SQL WITH \
     FUNCTION f(internal)); CREATE LANGUAGE l HANDLER h",
    "ALTER DATABASE d SET work_mem TO DEFAULT; ALTER DATABASE d REFRESH COLLATION VERSION; \
     ALTER TYPE e ADD VALUE 'c' BEFORE 'a'; ALTER TYPE e RENAME VALUE 'a' TO 'z'",
    "SELECT $1::int[], ARRAY[[1, 2], [3, 4]], '{}'::jsonb -> 'a' ->> 'b', t.* FROM ONLY t, u *, ROWS FROM \
     (generate_series(1, 2), unnest('{}'::int[])) WITH ORDINALITY AS r(a, b, o)",
    "SELECT DISTINCT ON (a) a FROM t ORDER BY a USING <, b NULLS FIRST OFFSET 1 ROWS FETCH FIRST 2 ROWS WITH TIES",
    "SELECT 1 UNION SELECT 2 INTERSECT ALL SELECT 3 EXCEPT SELECT 4; VALUES (1, 'a'), (2, 'b'); TABLE t",
    "SELECT * FROM t NATURAL FULL JOIN u CROSS JOIN v LEFT JOIN w USING (id) AS j",
    "CREATE TABLE ty (a int[] DEFAULT '{}', b varchar(10), c timestamp(3) with time zone, d double precision, \
     e bit varying(5)); \
     CREATE FUNCTION g(a t.n%TYPE) RETURNS SETOF t LANGUAGE sql AS 'SELECT 1'",
];

/// Whether two flattened trees are the same, item by item: fields, kinds,
/// values and shape. Type names compare case-insensitively (see `Kind`).
fn same_tree(a: &tree::Tree, b: &tree::Tree) -> Result<(), String> {
    if a.items.len() != b.items.len() {
        return Err(format!("{} items vs {}", a.items.len(), b.items.len()));
    }
    for (i, (x, y)) in a.items.iter().zip(&b.items).enumerate() {
        let kinds = match (x.kind, y.kind) {
            (tree::Kind::Struct(p), tree::Kind::Struct(q)) => p.eq_ignore_ascii_case(q),
            (tree::Kind::Str(..), tree::Kind::Str(..)) => a.str_at(i) == b.str_at(i),
            (p, q) => p == q,
        };
        if !kinds || x.field != y.field || x.parent != y.parent || x.end != y.end {
            return Err(format!("item {i}: {x:?} {:?} vs {y:?} {:?}", a.str_at(i), b.str_at(i)));
        }
    }
    Ok(())
}

/// Both corpora and [`NODE_KINDS`]: the UTF-8 texts without a NUL byte.
fn tree_texts() -> Vec<String> {
    guard_corpus::must_pass()
        .into_iter()
        .chain(guard_corpus::attacks())
        .filter_map(|c| c.sql_str().map(str::to_owned))
        .chain(NODE_KINDS.iter().map(|s| (*s).to_owned()))
        .filter(|s| !s.contains('\0'))
        .collect()
}

/// Parses `sql` both ways and panics unless they agree: the same trees
/// (`Some(statements)`) or the same syntax error (`None`).
fn both_paths_agree(sql: &str) -> Option<usize> {
    match (super::flat::parse(sql), super::parse::parse(sql)) {
        (Ok(ours), Ok(theirs)) => {
            assert_eq!(ours.len(), theirs.stmts.len(), "{sql}");
            for (t, raw) in ours.iter().zip(&theirs.stmts) {
                let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
                    panic!("{sql}: statement without a node")
                };
                let Ok(reference) = tree::Tree::build(node) else {
                    panic!("{sql}: flatten failed")
                };
                if let Err(e) = same_tree(t, &reference) {
                    panic!("{sql}: {e}");
                }
            }
            Some(ours.len())
        }
        (Err(super::parse::ParseError::Syntax(a)), Err(super::parse::ParseError::Syntax(b))) => {
            assert_eq!(a, b, "{sql}");
            None
        }
        (a, b) => panic!("{sql}: {:?} vs {:?}", a.map(|t| t.len()), b.map(|_| ())),
    }
}

#[test]
fn c_writer_and_protobuf_trees_agree() {
    let mut compared = 0usize;
    for sql in tree_texts() {
        compared += both_paths_agree(&sql).unwrap_or(0);
    }
    assert!(compared > 300, "only {compared} statements compared");
    let broken: Vec<String> = NODE_KINDS
        .iter()
        .filter_map(|sql| super::flat::parse(sql).err().map(|e| format!("{sql}: {e:?}")))
        .collect();
    assert!(broken.is_empty(), "{broken:#?}");
}

#[test]
fn direct_parse_agrees_with_pg_query_on_both_corpora() {
    for case in guard_corpus::must_pass().into_iter().chain(guard_corpus::attacks()) {
        let Some(sql) = case.sql_str() else { continue };
        if sql.contains('\0') {
            continue;
        }
        match (super::parse::parse(sql), pg_query::parse(sql, 0)) {
            (Ok(ours), Ok(theirs)) => assert_eq!(ours, theirs.protobuf, "{}", case.name),
            (Err(super::parse::ParseError::Syntax(a)), Err(pg_query::Error::Parse(b))) => {
                assert_eq!(a, b, "{}", case.name)
            }
            (Err(super::parse::ParseError::TooDeep), Err(pg_query::Error::Decode(_))) => {}
            (a, b) => panic!("{}: {a:?} vs {:?}", case.name, b.map(|_| ())),
        }
    }
}

/// `count` texts spliced from [`tree_texts`]: a prefix of one statement onto
/// a suffix of another, cut at spaces (deterministic). Many of them parse,
/// and they combine node kinds, names and quoting in ways no hand-written
/// case does.
fn spliced_texts(count: usize) -> Vec<String> {
    use rand::{Rng, SeedableRng};
    let texts = tree_texts();
    let cut = |s: &str, rng: &mut rand::rngs::StdRng| {
        let spaces: Vec<usize> = s.match_indices(' ').map(|(i, _)| i).collect();
        if spaces.is_empty() {
            0
        } else {
            spaces.get(rng.random_range(0..spaces.len())).copied().unwrap_or(0)
        }
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let pick = |rng: &mut rand::rngs::StdRng| texts.get(rng.random_range(0..texts.len())).cloned().unwrap_or_default();
    (0..count)
        .map(|_| {
            let (a, b) = (pick(&mut rng), pick(&mut rng));
            let (ca, cb) = (cut(&a, &mut rng), cut(&b, &mut rng));
            format!("{}{}", a.get(..ca).unwrap_or(""), b.get(cb..).unwrap_or(""))
        })
        .collect()
}

#[test]
fn c_writer_and_protobuf_agree_on_spliced_statements() {
    // Every text must give the same trees (or the same syntax error) both
    // ways, and none may crash.
    let (mut parsed, mut rejected) = (0usize, 0usize);
    for sql in spliced_texts(20_000) {
        match both_paths_agree(&sql) {
            Some(_) => parsed += 1,
            None => rejected += 1,
        }
    }
    assert!(parsed > 2000 && rejected > 2000, "parsed {parsed}, rejected {rejected}");
}

#[test]
fn prefilter_never_passes_what_the_walk_refuses_on_spliced_statements() {
    let g = guard();
    let (mut without_parse, mut with_parse, mut unparsable) = (0usize, 0usize, 0usize);
    for text in spliced_texts(20_000) {
        match prefilter_agrees_with_walk(&g, &text) {
            None => {}
            Some(Passed::WithParse) => with_parse += 1,
            Some(Passed::WithoutParse { unparsable: u }) => {
                without_parse += 1;
                unparsable += usize::from(u);
            }
        }
    }
    // Both paths take part, and the parse-free one meets unparsable text.
    assert!(
        without_parse > 1000 && with_parse > 100 && unparsable > 100,
        "without parse {without_parse}, with parse {with_parse}, unparsable {unparsable}"
    );
}

#[test]
fn statements_over_the_size_limit_are_refused_before_parsing() {
    let cfg = GuardConfig {
        max_statement_bytes: 1000,
        ..GuardConfig::default()
    };
    let g = Guard::new(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let fits = format!("SELECT '{}'", "x".repeat(1000 - 9));
    assert_eq!(fits.len(), 1000);
    assert_eq!(g.check_query(fits.as_bytes(), &scope()), Verdict::Allow);
    let long = format!("SELECT '{}'", "x".repeat(1000 - 8));
    match g.check_query(long.as_bytes(), &scope()) {
        Verdict::Deny(e) => {
            assert_eq!(e.code, SqlState::ProgramLimitExceeded);
            assert!(e.message.contains("1001 bytes long"), "{}", e.message);
            assert!(e.message.contains("up to 1000 bytes"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    let zero = GuardConfig {
        max_statement_bytes: 0,
        ..GuardConfig::default()
    };
    assert!(Guard::new(&zero).is_err());
}

#[test]
fn trees_over_the_node_limit_are_refused_as_too_large() {
    let cfg = GuardConfig {
        max_statement_bytes: 8 << 20,
        ..GuardConfig::default()
    };
    let g = Guard::new(&cfg).unwrap_or_else(|e| panic!("{e}"));
    // About 230,000 statements: far more nodes than the guard's limit, and
    // not deep at all.
    let many = "SELECT 1;".repeat(230_000);
    match g.check_query(many.as_bytes(), &scope()) {
        Verdict::Deny(e) => {
            assert_eq!(e.code, SqlState::ProgramLimitExceeded);
            assert!(e.message.contains("too large"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
}

fn pooled_guard() -> Guard {
    match Guard::for_mode(&GuardConfig::default(), true) {
        Ok(g) => g,
        Err(e) => panic!("default config rejected: {e}"),
    }
}

#[test]
fn pooled_mode_refuses_state_that_outlives_the_transaction() {
    let g = pooled_guard();
    for sql in [
        "LISTEN jobs",
        "PREPARE p AS SELECT 1",
        "EXECUTE p",
        "DEALLOCATE p",
        "DEALLOCATE ALL",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "declare c scroll cursor with hold for select 1",
        "CREATE TEMP TABLE t (a int)",
        "CREATE TEMPORARY TABLE t (a int) ON COMMIT PRESERVE ROWS",
        "CREATE TEMP TABLE t (a int) ON COMMIT DELETE ROWS",
        "CREATE TABLE pg_temp.t (a int)",
        "CREATE TABLE PG_TEMP.t (a int)",
        "SELECT 1 AS a INTO TEMP t",
        "SELECT 1 AS a INTO pg_temp.t",
        "CREATE TEMP TABLE t AS SELECT 1",
        "CREATE TEMP VIEW v AS SELECT 1",
        "CREATE TEMP SEQUENCE s",
        "SET work_mem = '4MB'",
        "SET SESSION work_mem = '4MB'",
        "SELECT set_config('work_mem', '4MB', false)",
        "SELECT set_config('work_mem', '4MB', $1)",
        "SELECT set_config('row_security', 'off', 'f')",
        "VACUUM",
        "VACUUM (ANALYZE) t",
        "CREATE INDEX CONCURRENTLY i ON t (a)",
        "DROP INDEX CONCURRENTLY i",
        "REINDEX (CONCURRENTLY) TABLE t",
        "CREATE DATABASE d",
        "DISCARD ALL; SELECT 1",
        "SELECT 1; DISCARD ALL",
    ] {
        let (v, _) = g.check_with_effects(sql.as_bytes(), &scope());
        match v {
            Verdict::Deny(e) => assert_eq!(e.code, SqlState::FeatureNotSupported, "{sql}: {e:?}"),
            other => panic!("{sql}: allowed in transaction pool mode: {other:?}"),
        }
    }
}

#[test]
fn pooled_mode_refusals_name_the_mode_with_0a000() {
    let g = pooled_guard();
    for sql in [
        "LISTEN jobs",
        "CREATE TEMP TABLE t (a int)",
        "SET work_mem = '4MB'",
        "VACUUM",
    ] {
        let (v, _) = g.check_with_effects(sql.as_bytes(), &scope());
        let Verdict::Deny(e) = v else { panic!("{sql} allowed") };
        assert_eq!(e.code, SqlState::FeatureNotSupported, "{sql}");
        assert!(e.message.contains("transaction pool mode"), "{sql}: {}", e.message);
    }
}

#[test]
fn pooled_mode_allows_transaction_scoped_state_and_reports_tracked_settings() {
    let g = pooled_guard();
    let none = Effects::default();
    let settings = Effects {
        session_settings: true,
        ..Effects::default()
    };
    let reset_all = Effects {
        session_settings: true,
        reset_all: true,
        ..Effects::default()
    };
    for (sql, want) in [
        ("SELECT 1", none),
        ("SET LOCAL work_mem = '4MB'", none),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", none),
        ("SELECT set_config('work_mem', '4MB', true)", none),
        ("SELECT set_config('work_mem', '4MB', 'on')", none),
        ("CREATE TEMP TABLE t (a int) ON COMMIT DROP", none),
        ("DECLARE c CURSOR FOR SELECT 1", none),
        ("DISCARD PLANS", none),
        ("ANALYZE", none),
        ("RESET work_mem", none),
        ("SET client_encoding = 'UTF8'", none),
        ("RESET ROLE", none),
        ("SELECT 1 INTO t2", none),
        ("SET search_path = app, public", settings),
        ("SET TIME ZONE 'UTC'", settings),
        ("SET application_name = 'x'", settings),
        ("RESET ALL", reset_all),
        ("RESET statement_timeout", settings),
        ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", settings),
        ("SELECT set_config('search_path', 'app', false)", settings),
        ("SELECT 1; SET DateStyle = ISO", settings),
        (
            "DISCARD ALL",
            Effects {
                discard_all: true,
                ..Effects::default()
            },
        ),
    ] {
        let (v, effects) = g.check_with_effects(sql.as_bytes(), &scope());
        assert_eq!(v, Verdict::Allow, "{sql}");
        assert_eq!(effects, want, "{sql}");
        // Cached verdicts keep their effects.
        assert_eq!(g.check_with_effects(sql.as_bytes(), &scope()).1, want, "{sql} (cached)");
    }
}

#[test]
fn session_mode_is_unchanged_by_the_pooled_rules() {
    let g = guard();
    for sql in [
        "LISTEN jobs",
        "CREATE TEMP TABLE t (a int)",
        "SET work_mem = '4MB'",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
    ] {
        assert!(
            !matches!(g.check_query(sql.as_bytes(), &scope()), Verdict::Deny(_)),
            "{sql}"
        );
    }
}
