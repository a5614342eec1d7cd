#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ (run from anywhere).

Every byte and construct PostgreSQL's lexer (scan.l) treats specially, plus
the bodies of tests/guard_corpus/attacks.sql and must_pass.sql; and for the
protocol targets, the edge cases of frames, startup packets, `options`
strings and token claims. Files are named seed-<sha1 prefix>, so re-running
only adds what is missing; `seeds.py frame startup` writes only those
targets. Inputs the fuzzer found are added next to them by hand (see
docs/fuzzing.md)."""
import hashlib, os, re, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = ["fast_path", "first_keyword", "string_continuation", "notify_rewrite",
           "frame", "startup", "options", "jwt_claims"]
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

import struct

# --- frame: [cap selector, largest read, read seed] + client byte stream.
def msg(tag, body=b"", length=None):
    n = len(body) + 4 if length is None else length
    return bytes([tag]) + struct.pack(">i", n) + body

def parse_msg(sql, name=b"", types=()):
    return msg(ord("P"), name + b"\0" + sql + b"\0" + struct.pack(">h", len(types)) + b"".join(struct.pack(">i", t) for t in types))

streams = []
for t in b"QPFXBCdcfDEHSpZ\0\xff":
    streams += [msg(t), msg(t, b"x\0"), msg(t, b"abc") + msg(ord("S"))]
streams += [
    msg(ord("Q"), b"SELECT 1\0"), msg(ord("Q"), b"SET ROLE postgres\0"), msg(ord("Q"), b"LISTEN x\0"),
    msg(ord("Q"), b"SELECT pg_notify('a', 'b')\0"), msg(ord("Q"), b"SELECT 1"), msg(ord("Q"), b"SELECT 1\0\0"),
    msg(ord("Q"), b"SELECT 'a long statement over the limit'\0"), msg(ord("Q"), b"x" * 200 + b"\0"),
    parse_msg(b"SELECT $1", b"s1", (23,)), parse_msg(b"SET ROLE x"), parse_msg(b"SELECT 1", types=(1, 2)),
    parse_msg(b"SELECT 'a statement longer than the limit'"),
    msg(ord("P"), b"\0SELECT 1\0\xff\xff"), msg(ord("P"), b"\0SELECT 1\0\0\x01"), msg(ord("P"), b"no nul"),
    msg(ord("F"), b"\0\0\0\x01\0\0\0\0\0\0"),
    parse_msg(b"SELECT $1") + msg(ord("B"), b"\0\0\0\0\0\x01\0\0\0\x011\0\0") + msg(ord("D"), b"P\0")
    + msg(ord("E"), b"\0\0\0\0\0") + msg(ord("S")),
    msg(ord("X")), msg(ord("X")) + msg(ord("Q"), b"SELECT 1\0"), msg(ord("X"), b"tail"),
    msg(ord("X"), length=100), msg(ord("X"), b"ab", length=64), msg(ord("S")) + msg(ord("X"), length=9),
    msg(ord("d"), b"copy data"), msg(ord("d"), length=1000) + b"partial", msg(ord("B"), length=70000)[:40],
    msg(ord("Q"), length=1 << 20), msg(ord("Q"), b"SELECT 1", length=1 << 20),
    msg(ord("S")) + msg(ord("Z")), msg(ord("S")) + b"\x00", msg(ord("S")) + b"S\0\0",
]
for n in [0, 1, 2, 3, 4, 5, -1, -4, -(1 << 31), (1 << 31) - 1, 1 << 20, (1 << 20) - 1, (1 << 20) + 1]:
    streams += [msg(ord("Q"), length=n), msg(ord("S")) + msg(ord("B"), length=n)]
for cap in [5, 6, 9, 16, 40, 64, 300]:
    streams += [msg(ord("S"), b"x" * (cap - 5)), msg(ord("S"), b"x" * (cap - 4)), msg(ord("Q"), b"y" * (cap - 6) + b"\0")]
frame_inputs = []
for i, st in enumerate(streams):
    for sel, mx, seed in [(7, 0, 0), (7, 1, 1), (i % 8, 3, i), ((i + 3) % 8, 64, 7 * i), (6, 7, 255 - i % 256)]:
        frame_inputs.append(bytes([sel, mx, seed % 256]) + st)

# --- startup: [mode] + stream; odd modes write the real length first.
def packet(body):
    return struct.pack(">I", len(body) + 4) + body

def startup_body(params, version=3 << 16):
    b = struct.pack(">I", version)
    for k, v in params:
        b += k + b"\0" + v + b"\0"
    return b + b"\0"

packets = [
    packet(struct.pack(">I", 80877103)), packet(struct.pack(">I", 80877104)),
    packet(struct.pack(">I", 80877103) + b"x"), packet(struct.pack(">I", 80877104) + b"\0"),
    packet(struct.pack(">IiI", 80877102, 42, 7)), packet(struct.pack(">Ii", 80877102, 42) + b"abc"),
    packet(struct.pack(">Ii", 80877102, 42) + b"k" * 256), packet(struct.pack(">Ii", 80877102, 42) + b"k" * 257),
    packet(struct.pack(">I", 80877102)), packet(struct.pack(">Ii", 80877102, -1) + b"\0" * 32),
    packet(startup_body([])), packet(startup_body([(b"user", b"app")])),
    packet(startup_body([(b"user", b"app"), (b"database", b"app"), (b"application_name", b"psql")])),
    packet(startup_body([(b"user", b"u"), (b"options", b"-c statement_timeout=5s --search-path=a,b")])),
    packet(startup_body([(b"user", b"u"), (b"options", b"-c role=postgres")])),
    packet(startup_body([(b"user", b"u"), (b"client_encoding", b"UTF8"), (b"_pq_.x", b"1")], 3 << 16 | 2)),
    packet(startup_body([(b"user", b"u")], 3 << 16 | 0xffff)), packet(startup_body([(b"user", b"u")], 2 << 16)),
    packet(startup_body([(b"user", b"u")], 4 << 16)), packet(struct.pack(">I", 1234 << 16 | 5681)),
    packet(startup_body([(b"p%d" % i, b"v") for i in range(64)])),
    packet(startup_body([(b"p%d" % i, b"v") for i in range(65)])),
    packet(startup_body([(b"user", b"a"), (b"user", b"b")])), packet(startup_body([(b"user", b"")])),
    packet(startup_body([(b"us\xffer", b"a")])), packet(startup_body([(b"user", b"\xc3")])),
    packet(startup_body([(b"user", b"a")])[:-1]), packet(startup_body([(b"user", b"a")]) + b"x"),
    packet(struct.pack(">I", 3 << 16) + b"user\0a\0\0\0"), packet(struct.pack(">I", 3 << 16) + b"user\0\0"),
    packet(struct.pack(">I", 3 << 16) + b"user"), packet(struct.pack(">I", 3 << 16) + b"\0\0"),
    packet(struct.pack(">I", 3 << 16) + b"\0x\0"), packet(startup_body([(b"user", b"x" * 9000)])),
    packet(startup_body([(b"user", b"x" * 9991)])), packet(startup_body([(b"user", b"x" * 9992)])),
    packet(struct.pack(">I", 80877103)) + packet(startup_body([(b"user", b"u")])),
    packet(startup_body([(b"user", b"u")])) + b"\x16\x03\x01",
]
for n in [0, 1, 4, 7, 8, 9, 10000, 10001, 0x7FFFFFFF, 0xFFFFFFFF]:
    packets += [struct.pack(">I", n) + struct.pack(">I", 3 << 16) + b"user\0u\0\0", struct.pack(">I", n)]
packets += [b"", b"\0", b"\0\0\0", b"\0\0\0\x10\0\x03\0\0user"]
startup_inputs = []
for i, pk in enumerate(packets):
    for mode in [0, 1, 2 + 2 * (i % 16), 3 + 2 * (i % 16), 255]:
        startup_inputs.append(bytes([mode]) + pk)

# --- options: the startup `options` string.
option_strings = [
    "-c application_name=a\\ b", "-cfoo=1", "-c", "-c noequals", "-X", "-c client_encoding=UTF8",
    "--client_encoding=unicode -c application_name=x", "-c statement_timeout=5s --search-path=a,b",
    "-c role=postgres", "-c app.current_organization_id=x", "-c client_encoding=SJIS",
    "-c standard_conforming_strings=off", "--standard-conforming-strings=on", "-c a=b=c", "-c a=",
    "--", "-c a=1 --", "-- -c a=1", "-c --", "---a=b", "--a-b=c", "-c-a=b", "-c =x", "--=x", "-", "foo",
    "-c a=1 foo", "-e", "-s", "-B 100", "-sc a=1", "-d 5", "-c a=1 -c a=2", "-c A=1 -c a=2",
    "\\", "\\ ", "-c a=b\\", "-c a=1 \\", "-c \\", "\\-c a=1", "-\\c a=1", "-c a\\=1",
    "-c application_name=x\\\\y", "-c application_name=\\é", "-c application_name=é", "\u00a0-c a=1",
    "-c\u00a0a=1", "-c a=\u2028", "-c application_name=x\x0b--statement_timeout=0",
    "-c application_name=x\x0b-c role=postgres", "-c application_name=x\x0c--role=postgres",
    "-c application_name=x\r--search_path=a", "-c application_name=x\\\x0b--role=postgres",
    "-c a=1\0-c b=2", "-c search_path=\"$user\",public", "-c application_name='quoted value'",
    " ".join(["-c a%d=%d" % (i, i) for i in range(100)]), "-c " + "x" * 300 + "=1",
    "-c statement_timeout=0", "-c lock_timeout=1h", "-c work_mem=1TB", "-c TimeZone=UTC",
    "--DateStyle=ISO,MDY", "-c extra_float_digits=3", "-c intervalstyle=iso_8601",
]
for sep in [" ", "\t", "\n", "\x0b", "\x0c", "\r", "  ", " \t\x0b "]:
    for body in ["-c{s}application_name=x", "{s}-c application_name=x{s}", "-c a=1{s}-c b=2",
                 "--search_path=a{s}--application_name=b", "-c a=x\\{s}y", "-c a=x\\\\{s}-c b=y",
                 "-c{s}{s}search_path=a", "--statement-timeout=5s{s}--", "-c a=1{s}--{s}"]:
        option_strings.append(body.format(s=sep))
# Each with a leading space, a trailing backslash and a trailing vertical tab.
option_strings += [v for o in option_strings[:60] for v in (" " + o, o + "\\", o + "\x0b")]
options_inputs = [o.encode("utf-8", "surrogatepass") for o in option_strings]

# --- jwt_claims: claim path, newline, claims JSON.
U = "11111111-2222-4333-8444-555555555555"
uuid_forms = [U, U.upper(), "{" + U + "}", "urn:uuid:" + U, "URN:UUID:" + U, U.replace("-", ""),
              "{" + U.replace("-", "") + "}", "00000000-0000-0000-0000-000000000000", "f" * 8 + "-ffff" * 3 + "-" + "f" * 12,
              U[:-1], U + "0", U.replace("-", "", 1) + "-", " " + U, U + " ", "g" + U[1:], U.replace("-", "_"),
              "x" * 65, "a" * 64, "urn:uuid:{" + U + "}", "{urn:uuid:" + U + "}", "\u0031" + U[1:]]
claim_names = ["organization_id", "sub", "app_metadata.organization_id", "pgtp.user_id", "a.b.c", "", ".",
               "a..b", "a.", ".a", "~0", "a/b", "0", "a.0", "é", "a~1b", "x.y"]
claims_bodies = []
for f in uuid_forms:
    v = '"' + f + '"'
    claims_bodies += ['{"organization_id": %s, "sub": %s}' % (v, v),
                      '{"app_metadata": {"organization_id": %s}, "pgtp": {"user_id": %s}}' % (v, v)]
for v in ["null", "1", "true", "[]", "{}", '["%s"]' % U, '{"id": "%s"}' % U, "1.5e300", '""', "-0"]:
    claims_bodies += ['{"organization_id": %s, "sub": %s}' % (v, v),
                      '{"app_metadata": {"organization_id": %s}, "pgtp": %s}' % (v, v)]
claims_bodies += [
    '{"organization_id": "%s", "organization_id": "%s"}' % (U, U.replace("1", "9")),
    '{"app_metadata": ["%s"]}' % U, '{"app_metadata": {"0": "%s"}, "a": ["%s"]}' % (U, U),
    '{"a": {"b": {"c": "%s"}}, "a.b.c": "x", "": {"": "%s"}, "~0": "%s", "a/b": "%s"}' % (U, U, U, U),
    '{"a": {"": {"b": "%s"}}, "x": {"y": null}, "é": "%s", "a~1b": "%s"}' % (U, U, U),
    '["%s"]' % U, '"%s"' % U, "1", "null", "{", '{"a": 1} x', "",
    '{"organization_id": "%s", "exp": "soon", "nbf": 9999999999, "iss": 1, "aud": {}}' % U,
    '{"organization_id": "%s", "sub": "not-a-uuid"}' % U, '{"sub": "%s"}' % U,
    "[" * 130 + "]" * 130, '{"a":' * 60 + '"%s"' % U + "}" * 60,
]
jwt_inputs = [(n + "\n" + b).encode() for n in claim_names for b in claims_bodies[:12]]
jwt_inputs += [(claim_names[i % len(claim_names)] + "\n" + b).encode() for i, b in enumerate(claims_bodies)]
jwt_inputs += [("organization_id\n" + b).encode() for b in claims_bodies]

generated = {"frame": frame_inputs, "startup": startup_inputs, "options": options_inputs, "jwt_claims": jwt_inputs}
for t in (sys.argv[1:] or TARGETS):
    if t in generated:
        write(t, generated[t])
    else:
        extra = notify if t == "notify_rewrite" else []
        write(t, constructs + extra + attacks + must_pass + ([] if extra else notify[:8]))
