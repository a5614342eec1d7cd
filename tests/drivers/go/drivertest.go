// Go drivers through the proxy: pgx v4 with pgxpool, and lib/pq with
// database/sql's pool. Run by tests/drivers/go/run.sh (mode pgx or pq).
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/jackc/pgconn"
	"github.com/jackc/pgx/v4"
	"github.com/jackc/pgx/v4/pgxpool"
	"github.com/lib/pq"
)

const rowsSQL = "SELECT agent_id, organization_id::text FROM agent_instances ORDER BY agent_id"
const pinSQL = "SELECT current_setting('app.current_organization_id') || ' ' || current_setting('app.current_user_id')"

var failures int

func env(k string) string {
	v := os.Getenv(k)
	if v == "" {
		panic(k + " is not set")
	}
	return v
}
func org(t string) string { return env("ORG_" + t) }
func pin(t string) string { return env("ORG_"+t) + " " + env("USER_"+t) }
func rows(t string) []string {
	return []string{"agent-" + strings.ToLower(t) + "-only " + org(t), "agent-shared " + org(t)}
}
func url(t, password string) string {
	if password == "" {
		password = env("TOKEN_" + t)
	}
	return fmt.Sprintf("postgres://app:%s@%s:%s/%s?sslmode=disable", password, env("PGTP_HOST"), env("PGTP_PORT"), env("PGTP_DB"))
}

func expect(what string, expected, got interface{}) {
	if reflect.DeepEqual(expected, got) {
		fmt.Println("ok: " + what)
	} else {
		failures++
		fmt.Printf("FAIL: %s\n  expected: %#v\n  got:      %#v\n", what, expected, got)
	}
}

// sqlstate of an error of either driver ("" for none, "other: ..." for a non-server error).
func sqlstate(err error) string {
	var pgErr *pgconn.PgError
	var pqErr *pq.Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &pgErr):
		return pgErr.Code
	case errors.As(err, &pqErr):
		return string(pqErr.Code)
	}
	return "other: " + err.Error()
}

func must(err error) {
	if err != nil {
		failures++
		fmt.Printf("FAIL: unexpected error: %v (sqlstate %s)\n", err, sqlstate(err))
		fmt.Printf("%d assertion(s) failed\n", failures)
		os.Exit(1)
	}
}

// querier: what *pgx.Conn, *pgxpool.Conn, *sql.Conn and *sql.DB have in common here.
type querier interface {
	strings(q string, args ...interface{}) ([]string, error)
	exec(q string, args ...interface{}) error
}

type pgxQ struct {
	q interface {
		Query(context.Context, string, ...interface{}) (pgx.Rows, error)
	}
}

func (p pgxQ) strings(q string, args ...interface{}) ([]string, error) {
	r, err := p.q.Query(context.Background(), q, args...)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []string
	for r.Next() {
		vals, err := r.Values()
		if err != nil {
			return nil, err
		}
		var parts []string
		for _, v := range vals {
			parts = append(parts, fmt.Sprint(v))
		}
		out = append(out, strings.Join(parts, " "))
	}
	return out, r.Err()
}
func (p pgxQ) exec(q string, args ...interface{}) error {
	r, err := p.q.Query(context.Background(), q, args...)
	if err != nil {
		return err
	}
	r.Close()
	return r.Err()
}

type sqlQ struct {
	q interface {
		QueryContext(context.Context, string, ...interface{}) (*sql.Rows, error)
	}
}

func (s sqlQ) strings(q string, args ...interface{}) ([]string, error) {
	r, err := s.q.QueryContext(context.Background(), q, args...)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cols, _ := r.Columns()
	var out []string
	for r.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]interface{}, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := r.Scan(ptrs...); err != nil {
			return nil, err
		}
		var parts []string
		for _, v := range vals {
			parts = append(parts, v.String)
		}
		out = append(out, strings.Join(parts, " "))
	}
	return out, r.Err()
}
func (s sqlQ) exec(q string, args ...interface{}) error {
	r, err := s.q.QueryContext(context.Background(), q, args...)
	if err != nil {
		return err
	}
	r.Close()
	return r.Err()
}

func one(q querier, sqlText string, args ...interface{}) string {
	out, err := q.strings(sqlText, args...)
	must(err)
	if len(out) != 1 {
		must(fmt.Errorf("%q returned %d rows", sqlText, len(out)))
	}
	return out[0]
}

// The checks every driver runs on one session of tenant t.
func session(q querier, t string) {
	other := map[string]string{"A": "B", "B": "A"}[t]
	got, err := q.strings(rowsSQL)
	must(err)
	expect("tenant "+t+": exactly its rows", rows(t), got)
	expect("tenant "+t+": none of "+other+"'s rows by parameter", "0",
		one(q, "SELECT count(*) FROM agent_instances WHERE organization_id = $1", org(other)))
	expect("tenant "+t+": pinned", pin(t), one(q, pinSQL))
	must(q.exec("RESET ALL"))
	expect("tenant "+t+": pinned after RESET ALL", pin(t), one(q, pinSQL))
	must(q.exec("DISCARD ALL"))
	expect("tenant "+t+": pinned after DISCARD ALL", pin(t), one(q, pinSQL+" -- after discard"))
	expect("tenant "+t+": SET of the pin refused", "42501",
		sqlstate(q.exec("SET app.current_organization_id = '"+org(other)+"'")))
	expect("tenant "+t+": pinned after the refused SET", pin(t), one(q, pinSQL+" -- after refusal"))
}

func runPgx(ctx context.Context) {
	for _, t := range []string{"A", "B"} {
		c, err := pgx.Connect(ctx, url(t, ""))
		must(err)
		session(pgxQ{c}, t)
		must(c.Close(ctx))
	}
	_, err := pgx.Connect(ctx, url("A", "not-a-token"))
	expect("wrong password refused by the proxy", "28P01", sqlstate(err))

	// pgxpool's reset path: a connection released inside a transaction is
	// closed, not reused; the next borrower gets a new, pinned session.
	cfg, err := pgxpool.ParseConfig(url("A", ""))
	must(err)
	cfg.MaxConns = 1
	pool, err := pgxpool.ConnectConfig(ctx, cfg)
	must(err)
	defer pool.Close()
	c, err := pool.Acquire(ctx)
	must(err)
	pid := c.Conn().PgConn().PID()
	_, err = c.Exec(ctx, "BEGIN")
	must(err)
	_, err = c.Exec(ctx, "SELECT set_config('app.current_organization_id', $1, false)", org("B"))
	expect("pool: refused set_config inside a transaction", "42501", sqlstate(err))
	expect("pool: connection left in a failed transaction", byte('E'), c.Conn().PgConn().TxStatus())
	c.Release() // dirty on purpose
	c, err = pool.Acquire(ctx)
	must(err)
	expect("pool: the failed-transaction connection was replaced", true, c.Conn().PgConn().PID() != pid)
	expect("pool: new connection idle", byte('I'), c.Conn().PgConn().TxStatus())
	expect("pool: pinned after the reset", pin("A"), one(pgxQ{c}, pinSQL))
	got, err := pgxQ{c}.strings(rowsSQL)
	must(err)
	expect("pool: exactly tenant A's rows after the reset", rows("A"), got)
	c.Release()
}

func runPq(ctx context.Context) {
	for _, t := range []string{"A", "B"} {
		db, err := sql.Open("postgres", url(t, ""))
		must(err)
		c, err := db.Conn(ctx) // one session for the RESET/DISCARD checks
		must(err)
		session(sqlQ{c}, t)
		must(c.Close())
		must(db.Close())
	}
	db, err := sql.Open("postgres", url("A", "not-a-token"))
	must(err)
	expect("wrong password refused by the proxy", "28P01", sqlstate(db.PingContext(ctx)))
	db.Close()

	// database/sql's reset path: a transaction rolled back by the application
	// returns its connection to the pool, which reuses it (one open connection).
	db, err = sql.Open("postgres", url("A", ""))
	must(err)
	defer db.Close()
	db.SetMaxOpenConns(1)
	pid := one(sqlQ{db}, "SELECT pg_backend_pid()")
	tx, err := db.BeginTx(ctx, nil)
	must(err)
	_, err = tx.ExecContext(ctx, "SET application_name = 'dirty'")
	must(err)
	_, err = tx.ExecContext(ctx, "SELECT set_config('app.current_organization_id', $1, false)", org("B"))
	expect("pool: refused set_config inside a transaction", "42501", sqlstate(err))
	_, err = tx.ExecContext(ctx, "SELECT 1")
	expect("pool: the transaction is aborted (25P02)", "25P02", sqlstate(err))
	must(tx.Rollback())
	expect("pool: same backend reused", pid, one(sqlQ{db}, "SELECT pg_backend_pid()"))
	expect("pool: the SET inside the rolled-back transaction is gone", false,
		one(sqlQ{db}, "SHOW application_name") == "dirty")
	expect("pool: pinned after the reset", pin("A"), one(sqlQ{db}, pinSQL))
	got, err := sqlQ{db}.strings(rowsSQL)
	must(err)
	expect("pool: exactly tenant A's rows after the reset", rows("A"), got)
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	switch os.Args[1] {
	case "pgx":
		fmt.Println("pgx v4 (Debian golang-github-jackc-pgx-v4-dev) with pgxpool")
		runPgx(ctx)
	case "pq":
		fmt.Println("lib/pq (Debian golang-github-lib-pq-dev) with database/sql")
		runPq(ctx)
	default:
		panic("mode: pgx or pq")
	}
	if failures > 0 {
		fmt.Printf("%d assertion(s) failed\n", failures)
		os.Exit(1)
	}
	fmt.Println("all assertions passed")
}
