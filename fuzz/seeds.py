#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ (run from anywhere).

Every byte and construct PostgreSQL's lexer (scan.l) treats specially, plus
the bodies of tests/guard_corpus/attacks.sql and must_pass.sql. Files are
named seed-<sha1 prefix>, so re-running only adds what is missing. Inputs the
fuzzer found are added next to them by hand (see docs/fuzzing.md)."""
import hashlib, os, re, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = ["fast_path", "first_keyword", "string_continuation", "notify_rewrite"]
ORG_B = b"bbbbbbbb-0000-4000-8000-000000000002"

def corpus_bodies(name):
    out, cur, hexed = [], None, False
    for line in open(os.path.join(ROOT, "tests/guard_corpus", name), encoding="utf-8").read().split("\n"):
        if line.startswith("-- @case "):
            if cur is not None:
                out.append(finish(cur, hexed))
            cur, hexed = [], "[hex]" in line
        elif cur is not None:
            cur.append(line)
    if cur is not None:
        out.append(finish(cur, hexed))
    return out

def finish(lines, hexed):
    body = "\n".join(l.rstrip() for l in lines).rstrip()
    if hexed:
        return bytes.fromhex(re.sub(r"\s", "", body))
    return body.encode()

S = lambda s: s.encode() if isinstance(s, str) else s
constructs = []
# Every control byte, DEL and some non-ASCII, as whitespace, after a `--`
# comment, inside a string continuation and glued to the keyword.
for c in list(range(0x00, 0x21)) + [0x7f, 0x80, 0xa0, 0xc2, 0xff]:
    b = bytes([c])
    constructs += [b"SELECT" + b + b"1", b"-- x" + b + b"SELECT 1", b"SELECT 'pg_'" + b + b"'sleep'"]
constructs.append(bytes(range(256)))
constructs += [S(x) for x in [
    # Comments ended by CR, LF, both, nothing; the original bypass.
    "-- x\r/*\nSELECT */ SET app.current_organization_id = 'b'",
    "-- x\r/*\nSELECT */ ALTER ROLE CURRENT_USER SET work_mem = '1GB'",
    "--\r/* \n select */ reset all",
    "-- x\nSELECT 1", "-- x\r\nSELECT 1", "-- x\n\rSELECT 1", "SELECT 1 --", "SELECT 1 -- x", "--", "-",
    "SELECT 1 --\x0b", "\x0bSELECT 1", "SELECT\x0c1", "/* a */\r\n\x0cSELECT 1\r\n",
    # Block comments: nesting, flex longest match on * and /.
    "/* /* */ */ SELECT 1", "/* /* */ SELECT 1", "/*/ SELECT 1 */ SET ROLE x", "/**/SELECT 1",
    "/***/SELECT 1", "/* */*/ SELECT 1", "/*/**/*/SELECT 1", "*/* SELECT */ 1", "/*", "/* -- */ SELECT 1",
    "-- /*\nSELECT 1 */", "SELECT 1 /* unterminated",
    # Parentheses before the keyword.
    "((SELECT 1))", "( /* c */ (-- x\n SELECT 1))", "(SET x = 1)", "(\x0bSELECT 1)",
    # String constants and continuations.
    "SELECT 'a'\n'b'", "SELECT 'a'\r'b'", "SELECT 'a' -- c\r'b'", "SELECT 'a' -- c\n'b'", "SELECT 'a'\r\n'b'",
    "SELECT 'a' \t\x0c\n 'b'", "SELECT 'a' 'b'", "SELECT 'a'\x0b\n'b'", "SELECT 'a'\n\x0b'b'",
    "SELECT 'set_'\n'config'('app.current_organization_id', 'x', false)",
    "SELECT 'set_' -- x\r'config'", "SELECT 'it''s'", "SELECT ''''", "SELECT ''", "SELECT 'a''\n'b'",
    "SELECT 'a' /* c */\n'b'", "SELECT 'a'\n/* c */'b'", "SELECT 'a' -- '-- '-- \n, 'b'", "SELECT '-- '\n'x'",
    "SELECT 'unterminated", "SELECT 'a'\n'b'\n'c'", "SELECT 'a'--\n'b'",
    # E'', B'', X'', N'' strings and backslashes.
    "SELECT E'\\x41'", "SELECT E'a\\''", "SELECT E'a'\n'b'", "SELECT e'\\\\'", "SELECT E'\\u0070g_sleep'",
    "SELECT B'01'\n'10'", "SELECT X'1f'\r'2e'", "SELECT N'x'\n'y'", "SELECT 'a\\'", "SELECT '\\'\n'x'",
    # Unicode escapes with UESCAPE.
    "SELECT U&'\\0070g_sleep'", "SELECT U&\"\\0070g_sleep\"(1)", "SELECT U&'!0070' UESCAPE '!'",
    "SET U&\"\\0061pp\".U&\"current\\005forganization_id\" = 'x'", "SELECT u&'x'", "SELECT U&'a'\n'b'",
    "SELECT U&\"a\" UESCAPE '#'", "SELECT * FROM U&\"!0070g_stat_activity\" UESCAPE '!'",
    # Dollar quoting.
    "SELECT $$a$$", "SELECT $tag$ ' -- /* $tag$", "SELECT $a$b$a$", "DO $$ BEGIN PERFORM set_config('a','b',false); END $$",
    "SELECT $1", "SELECT $1a", "SELECT $$\n$$\n'x'", "SELECT $_$x$_$", "SELECT $é$x$é$",
    # Identifiers glued to keywords; quoted identifiers.
    "select1", "select$", "selecté", "SELECT1", "select_x", "SELECT$1", "selectÉ 1", "\"select\" 1",
    "SELECTé", "sElEcT 1", "TABLE t", "VALUES (1)", "WITH x AS (SELECT 1) SELECT * FROM x",
    "COMMIT PREPARED 'x'", "ROLLBACK PREPARED 'x'", "PREPARE TRANSACTION 'x'", "PREPARE p AS SELECT 1",
    "EXECUTE p(set_config('a', 'b', false))", "DECLARE c CURSOR FOR SELECT lo_get(1)",
    # Numbers glued to words (PostgreSQL 16+ lexes these differently).
    "SELECT 1select", "SELECT 0x1F", "SELECT 1_000", "SELECT 1e", "SELECT .5e1x",
    # Statement splitting.
    "SELECT 1; SET ROLE postgres", "SELECT 1;SELECT 2", "SELECT 'a;b'", "SELECT 1;;", "SELECT 1; -- x",
    ";SELECT 1", "SELECT 1 ;\n ; ",
    # Non-ASCII.
    "SELECT 'é'", "SELECT ñ", "SELECT 'x' AS \"日本\"", "SELECT '\u2028'", "SELECT\u00a01",
]]
# Invalid and overlong UTF-8.
constructs += [b"SELECT '\xc0\xaf'", b"SELECT '\xe0\x80\xaf'", b"SELECT 1 \xff", b"SELECT '\xed\xa0\x80'", b"\xc3"]
notify = [S(x) for x in [
    "LISTEN x", "NOTIFY x", "NOTIFY x, 'payload'", "UNLISTEN x", "UNLISTEN *", "LISTEN \"X y\"",
    "NOTIFY \"a\"\"b\", 'it''s'", "SELECT 1; NOTIFY a; /* c */ LISTEN b;", "NOTIFY a;NOTIFY b",
    "LISTEN U&\"\\0078\"", "NOTIFY x, E'\\n'", "NOTIFY x, 'a'\n'b'", "-- c\nLISTEN x -- d\n;",
    "BEGIN; LISTEN x; COMMIT", "UNLISTEN *; LISTEN x", "NOTIFY " + "c" * 40, "NOTIFY " + "c" * 41,
    "CREATE RULE r AS ON INSERT TO t DO NOTIFY x", "EXPLAIN NOTIFY x", "SELECT pg_notify('x', 'y')",
    "listen\tx", "notify/**/x", "NOTIFY x, ''", "LISTEN x; SELECT 'NOTIFY y'", "LISTEN é",
]]
attacks, must_pass = corpus_bodies("attacks.sql"), corpus_bodies("must_pass.sql")

def write(target, inputs):
    d = os.path.join(ROOT, "fuzz/corpus", target)
    os.makedirs(d, exist_ok=True)
    n = 0
    for data in inputs:
        name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
        p = os.path.join(d, name)
        if not os.path.exists(p):
            open(p, "wb").write(data)
            n += 1
    print(f"{target}: {n} new seeds ({len(os.listdir(d))} files)")

for t in TARGETS:
    extra = notify if t == "notify_rewrite" else []
    write(t, constructs + extra + attacks + must_pass + ([] if extra else notify[:8]))
