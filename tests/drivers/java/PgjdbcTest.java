// pgjdbc through the proxy, alone and behind a HikariCP pool.
// Run by tests/drivers/java/run.sh (environment as in tests/drivers/run.sh).
import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Properties;
import org.postgresql.PGConnection;

public class PgjdbcTest {
    static final String URL = "jdbc:postgresql://" + System.getenv("PGTP_HOST") + ":" + System.getenv("PGTP_PORT")
            + "/" + System.getenv("PGTP_DB") + "?sslmode=disable&ApplicationName=pgjdbc-test";
    static final String ROWS_SQL = "SELECT agent_id, organization_id::text FROM agent_instances ORDER BY agent_id";
    static final String PIN_SQL = "SELECT current_setting('app.current_organization_id') || ' ' || current_setting('app.current_user_id')";
    static int failures = 0;

    static String env(String k) { return Objects.requireNonNull(System.getenv(k), k + " is not set"); }
    static String token(String t) { return env("TOKEN_" + t); }
    static String org(String t) { return env("ORG_" + t); }
    static String pin(String t) { return env("ORG_" + t) + " " + env("USER_" + t); }
    static List<String> rows(String t) { return List.of("agent-" + t.toLowerCase() + "-only " + org(t), "agent-shared " + org(t)); }

    static void expect(String what, Object expected, Object got) {
        if (Objects.equals(expected, got)) {
            System.out.println("ok: " + what);
        } else {
            failures++;
            System.out.println("FAIL: " + what + "\n  expected: " + expected + "\n  got:      " + got);
        }
    }

    interface Sql { void run() throws SQLException; }

    static void expectState(String what, String sqlstate, Sql body) {
        try {
            body.run();
            expect(what, sqlstate, "no error");
        } catch (SQLException e) {
            expect(what, sqlstate, e.getSQLState());
        }
    }

    static List<String> query(Connection c, String sql) throws SQLException {
        List<String> out = new ArrayList<>();
        try (Statement s = c.createStatement(); ResultSet r = s.executeQuery(sql)) {
            int n = r.getMetaData().getColumnCount();
            while (r.next()) {
                StringBuilder b = new StringBuilder();
                for (int i = 1; i <= n; i++) b.append(i > 1 ? " " : "").append(r.getString(i));
                out.add(b.toString());
            }
        }
        return out;
    }

    static String one(Connection c, String sql) throws SQLException { return query(c, sql).get(0); }

    static void exec(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement()) { s.execute(sql); }
    }

    public static void main(String[] args) throws Exception {
        System.out.println("pgjdbc " + org.postgresql.Driver.class.getPackage().getImplementationVersion()
                + ", HikariCP from " + HikariDataSource.class.getProtectionDomain().getCodeSource().getLocation());
        for (String t : List.of("A", "B")) {
            String other = t.equals("A") ? "B" : "A";
            Properties p = new Properties();
            p.setProperty("user", "app");
            p.setProperty("password", token(t));
            try (Connection c = DriverManager.getConnection(URL, p)) {
                expect("tenant " + t + ": exactly its rows", rows(t), query(c, ROWS_SQL));
                // Run 6 times: from the 5th run pgjdbc uses a named server-side statement.
                try (PreparedStatement ps = c.prepareStatement("SELECT count(*) FROM agent_instances WHERE organization_id = ?::uuid")) {
                    for (int i = 1; i <= 6; i++) {
                        ps.setString(1, org(other));
                        try (ResultSet r = ps.executeQuery()) { r.next(); expect("tenant " + t + ": none of " + other + "'s rows by parameter, run " + i, 0L, r.getLong(1)); }
                    }
                    expect("tenant " + t + ": pinned", pin(t), one(c, PIN_SQL));
                    exec(c, "RESET ALL");
                    expect("tenant " + t + ": pinned after RESET ALL", pin(t), one(c, PIN_SQL));
                    exec(c, "DISCARD ALL");
                    expect("tenant " + t + ": pinned after DISCARD ALL", pin(t), one(c, PIN_SQL));
                    ps.setString(1, org(t));
                    try (ResultSet r = ps.executeQuery()) { r.next(); expect("tenant " + t + ": prepared statement re-prepared after DISCARD ALL sees its 2 rows", 2L, r.getLong(1)); }
                }
                expectState("tenant " + t + ": SET of the pin refused", "42501",
                        () -> exec(c, "SET app.current_organization_id = '" + org(other) + "'"));
                expect("tenant " + t + ": pinned after the refused SET", pin(t), one(c, PIN_SQL));
            }
        }

        expectState("wrong password refused by the proxy", "28P01", () -> {
            Properties p = new Properties();
            p.setProperty("user", "app");
            p.setProperty("password", "not-a-token");
            DriverManager.getConnection(URL, p).close();
        });

        // HikariCP's reset path: a connection closed inside a failed transaction with
        // autocommit off is rolled back and has autocommit restored by the pool.
        HikariConfig hc = new HikariConfig();
        hc.setJdbcUrl(URL);
        hc.setUsername("app");
        hc.setPassword(token("A"));
        hc.setMaximumPoolSize(1);
        hc.setMinimumIdle(1);
        hc.setPoolName("pgtp");
        try (HikariDataSource ds = new HikariDataSource(hc)) {
            int pid;
            String defaultAppName;
            try (Connection c = ds.getConnection()) {
                pid = c.unwrap(PGConnection.class).getBackendPID();
                defaultAppName = one(c, "SHOW application_name");
                c.setAutoCommit(false);
                exec(c, "SET application_name = 'dirty'");
                expectState("pool: refused set_config inside a transaction", "42501",
                        () -> one(c, "SELECT set_config('app.current_organization_id', '" + org("B") + "', false)"));
                expectState("pool: the transaction is aborted (25P02) until rollback", "25P02", () -> one(c, "SELECT 1"));
                // Closed dirty on purpose: the pool must clean it.
            }
            try (Connection c = ds.getConnection()) {
                expect("pool: same backend reused", pid, c.unwrap(PGConnection.class).getBackendPID());
                expect("pool: autocommit restored", true, c.getAutoCommit());
                expect("pool: transaction rolled back (with the SET made in it)", defaultAppName, one(c, "SHOW application_name"));
                expect("pool: pinned after the reset", pin("A"), one(c, PIN_SQL));
                expect("pool: exactly tenant A's rows after the reset", rows("A"), query(c, ROWS_SQL));
            }
        }
        System.out.println(failures == 0 ? "all assertions passed" : failures + " assertion(s) failed");
        System.exit(failures == 0 ? 0 : 1);
    }
}
