//! The statement policy: visits every item of a flattened parse tree and
//! refuses the first one that moves the tenant, changes the role, changes
//! how SQL is lexed, hides code from the parser or opens a side channel.
//!
//! Input: one statement of untrusted client SQL, parsed by pg_query and
//! flattened by [`super::tree`]. The loop is over all items, so no node kind
//! or field can be skipped; rules are keyed by node type name.

use super::functions;
use super::notify;
use super::refusal::{self, Refusal};
use super::settings::{SetRequest, Settings};
use super::tree::{Kind, Tree};

/// `ObjectType::ObjectLargeobject` in pg_query's protobuf.
const OBJECT_LARGEOBJECT: i64 = 23;

/// Fields whose integer is an `ObjectType` (GRANT, COMMENT, ALTER ... OWNER,
/// SECURITY LABEL, DROP, RENAME, ALTER DEFAULT PRIVILEGES).
const OBJECT_TYPE_FIELDS: &[&str] = &["objtype", "object_type", "remove_type", "rename_type", "relation_type"];

/// Statements that write to their `relation` field.
const WRITE_STATEMENTS: &[&str] = &["UpdateStmt", "InsertStmt", "DeleteStmt", "MergeStmt", "CopyStmt"];

/// Statements that store a query to run later, under any role.
const STORED_QUERY_STATEMENTS: &[&str] = &["ViewStmt", "RuleStmt", "CreateTrigStmt"];

/// `LOCK TABLE` modes (PostgreSQL's lock mode numbers) that conflict with no
/// other session's SELECT, INSERT, UPDATE, DELETE or autovacuum: ACCESS
/// SHARE, ROW SHARE and ROW EXCLUSIVE. Stronger ones are refused.
const HARMLESS_LOCK_MODES: std::ops::RangeInclusive<i64> = 1..=3;

/// `TransactionStmtKind` numbers in pg_query's protobuf: the two-phase
/// commit statements (`PREPARE TRANSACTION`, `COMMIT PREPARED`, `ROLLBACK
/// PREPARED`). A prepared transaction outlives the session, keeps its locks
/// and can be finished by any session of the same role, so by another tenant.
const TWO_PHASE_KINDS: &[(i64, &str)] = &[
    (8, "PREPARE TRANSACTION"),
    (9, "COMMIT PREPARED"),
    (10, "ROLLBACK PREPARED"),
];

/// `CURSOR_OPT_HOLD` in a `DeclareCursorStmt`'s options.
const CURSOR_OPT_HOLD: i64 = 0x0020;
/// `OnCommitAction::ONCOMMIT_DROP` in pg_query's protobuf.
const ONCOMMIT_DROP: i64 = 4;
/// `DiscardMode::DISCARD_ALL` in pg_query's protobuf.
const DISCARD_ALL: i64 = 1;

/// The policy switches from [`super::GuardConfig`].
pub(crate) struct Policy {
    pub settings: Settings,
    pub allow_do_blocks: bool,
    pub allow_create_function: bool,
    pub allow_explain: bool,
    /// Transaction pool mode: session state that would outlive the
    /// transaction on a shared connection is refused (0A000), and changes
    /// of tracked settings are reported in [`Effects`].
    pub pooled: bool,
}

/// What an allowed statement does to its session beyond its transaction
/// (reported in transaction pool mode only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Effects {
    /// Sets or resets a tracked setting for the session (`SET`, `RESET`,
    /// `RESET ALL`, `set_config(..., false)`).
    pub session_settings: bool,
    /// Is `DISCARD ALL`.
    pub discard_all: bool,
    /// Has `RESET ALL` (the session's startup values come back).
    pub reset_all: bool,
}

impl Effects {
    /// Both sets of effects.
    pub fn union(self, other: Effects) -> Effects {
        Effects {
            session_settings: self.session_settings || other.session_settings,
            discard_all: self.discard_all || other.discard_all,
            reset_all: self.reset_all || other.reset_all,
        }
    }
}

impl Policy {
    /// Checks one statement. The root item is the statement node itself.
    pub(crate) fn check(&self, tree: &Tree) -> Result<Effects, Refusal> {
        for (i, item) in tree.items.iter().enumerate() {
            match item.kind {
                Kind::Struct(ty) => self.check_node(tree, i, ty)?,
                Kind::Str(..) => check_string(tree, i)?,
                Kind::Int(v) => {
                    if v == OBJECT_LARGEOBJECT && OBJECT_TYPE_FIELDS.contains(&item.field) {
                        return Err(refusal::large_object("LARGE OBJECT"));
                    }
                }
                Kind::Seq | Kind::True => {}
            }
        }
        // Transaction pool mode's own refusals come second, so a statement
        // that is refused for security says so (42501), not 0A000.
        let mut effects = Effects::default();
        if self.pooled {
            for (i, item) in tree.items.iter().enumerate() {
                if let Kind::Struct(ty) = item.kind {
                    effects = effects.union(self.check_pooled(tree, i, ty)?);
                }
            }
        }
        Ok(effects)
    }

    /// Transaction pool mode: state that would stay on the connection after
    /// the transaction, where the next transaction of another session (and
    /// tenant) would find it, is refused; statements PostgreSQL runs only
    /// outside a transaction block are refused too (the tenant is pinned in
    /// the transaction).
    fn check_pooled(&self, tree: &Tree, i: usize, ty: &str) -> Result<Effects, Refusal> {
        let none = Effects::default();
        match ty {
            "VariableSetStmt" => {
                if tree.bool_field(i, "is_local") {
                    return Ok(none);
                }
                let k = tree.int_field(i, "kind");
                let name = tree.str_field(i, "name");
                match k {
                    super::settings::kind::RESET_ALL => Ok(Effects {
                        session_settings: true,
                        reset_all: true,
                        ..none
                    }),
                    super::settings::kind::SET_MULTI if name.eq_ignore_ascii_case("session characteristics") => {
                        Ok(Effects {
                            session_settings: true,
                            ..none
                        })
                    }
                    super::settings::kind::SET_MULTI => Ok(none),
                    _ if crate::tracked::is_tracked(name) => Ok(Effects {
                        session_settings: true,
                        ..none
                    }),
                    // What the session policy lets through for these only
                    // restates the pin or the login role: a no-op.
                    _ if super::settings::is_noop_only(name) => Ok(none),
                    // RESET of a setting no session can change is a no-op.
                    super::settings::kind::RESET => Ok(none),
                    _ => Err(refusal::pooled_session_setting(name)),
                }
            }
            "FuncCall" => self.check_pooled_set_config(tree, i),
            "ListenStmt" => Err(refusal::pooled("LISTEN", "Listen on a dedicated session-mode connection.")),
            "PrepareStmt" | "ExecuteStmt" | "DeallocateStmt" => Err(refusal::pooled(
                "SQL-level PREPARE, EXECUTE and DEALLOCATE",
                "Use the protocol's prepared statements (every driver's default), which the proxy carries across connections.",
            )),
            "DeclareCursorStmt" if tree.int_field(i, "options") & CURSOR_OPT_HOLD != 0 => Err(refusal::pooled(
                "DECLARE ... WITH HOLD",
                "Declare the cursor without WITH HOLD inside the transaction that reads it.",
            )),
            "CreateStmt" => self.check_pooled_temp(tree, tree.field(i, "relation"), tree.int_field(i, "oncommit")),
            "IntoClause" => self.check_pooled_temp(tree, tree.field(i, "rel"), tree.int_field(i, "on_commit")),
            "ViewStmt" => self.check_pooled_temp(tree, tree.field(i, "view"), 0),
            "CreateSeqStmt" => self.check_pooled_temp(tree, tree.field(i, "sequence"), 0),
            "DiscardStmt" if tree.int_field(i, "target") == DISCARD_ALL => {
                if tree.parent(i).is_some() {
                    return Err(refusal::internal());
                }
                Ok(Effects {
                    discard_all: true,
                    ..none
                })
            }
            "VacuumStmt" if tree.bool_field(i, "is_vacuumcmd") => Err(refusal::pooled_outside_block("VACUUM")),
            "IndexStmt" if tree.bool_field(i, "concurrent") => {
                Err(refusal::pooled_outside_block("CREATE INDEX CONCURRENTLY"))
            }
            "DropStmt" if tree.bool_field(i, "concurrent") => Err(refusal::pooled_outside_block("DROP INDEX CONCURRENTLY")),
            "ReindexStmt" if has_option(tree, i, "params", "concurrently") => {
                Err(refusal::pooled_outside_block("REINDEX CONCURRENTLY"))
            }
            "CreatedbStmt" => Err(refusal::pooled_outside_block("CREATE DATABASE")),
            "DropdbStmt" => Err(refusal::pooled_outside_block("DROP DATABASE")),
            "CreateTableSpaceStmt" => Err(refusal::pooled_outside_block("CREATE TABLESPACE")),
            "DropTableSpaceStmt" => Err(refusal::pooled_outside_block("DROP TABLESPACE")),
            "CreateSubscriptionStmt" | "AlterSubscriptionStmt" | "DropSubscriptionStmt" => {
                Err(refusal::pooled_outside_block("CREATE / ALTER / DROP SUBSCRIPTION"))
            }
            "AlterDatabaseStmt" => Err(refusal::pooled_outside_block("ALTER DATABASE")),
            _ => Ok(none),
        }
    }

    /// `set_config(name, value, is_local)` in transaction pool mode: local
    /// when `is_local` is the constant true; otherwise a session setting,
    /// allowed for tracked names only (the name is a constant: the session
    /// policy refuses any other `set_config`).
    fn check_pooled_set_config(&self, tree: &Tree, i: usize) -> Result<Effects, Refusal> {
        let Some(name) = tree.list(i, "funcname").last().and_then(|n| tree.string_node(n)) else {
            return Ok(Effects::default());
        };
        if !name.eq_ignore_ascii_case("set_config") {
            return Ok(Effects::default());
        }
        let local = tree
            .list(i, "args")
            .nth(2)
            .and_then(|a| bool_constant(tree, a))
            .unwrap_or(false);
        if local {
            return Ok(Effects::default());
        }
        let setting = tree
            .list(i, "args")
            .next()
            .and_then(|a| constant_text(tree, a))
            .unwrap_or("");
        if crate::tracked::is_tracked(setting) {
            Ok(Effects {
                session_settings: true,
                ..Effects::default()
            })
        } else {
            Err(refusal::pooled_session_setting(setting))
        }
    }

    /// A relation created by `CREATE`, `SELECT INTO`, `CREATE TABLE AS`,
    /// `CREATE VIEW` or `CREATE SEQUENCE`: a temporary one outlives the
    /// transaction unless it is `ON COMMIT DROP`.
    fn check_pooled_temp(&self, tree: &Tree, rel: Option<usize>, on_commit: i64) -> Result<Effects, Refusal> {
        let Some(rel) = rel else {
            return Ok(Effects::default());
        };
        let schema = tree.str_field(rel, "schemaname");
        let temporary = tree.str_field(rel, "relpersistence") == "t"
            || schema.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("pg_temp"));
        if temporary && on_commit != ONCOMMIT_DROP {
            return Err(refusal::pooled(
                "a temporary table, view or sequence that outlives its transaction",
                "Create it with ON COMMIT DROP inside the transaction that uses it.",
            ));
        }
        Ok(Effects::default())
    }

    fn check_node(&self, tree: &Tree, i: usize, ty: &str) -> Result<(), Refusal> {
        match ty {
            "VariableSetStmt" => self.check_variable_set(tree, i),
            "FuncCall" => self.check_func_call(tree, i),
            "DoStmt" if !self.allow_do_blocks => Err(refusal::code_block("DO")),
            "CreateFunctionStmt" if !self.allow_create_function => {
                Err(refusal::code_block("CREATE FUNCTION / CREATE PROCEDURE"))
            }
            "LoadStmt" => Err(refusal::code_block("LOAD")),
            "CreateExtensionStmt" | "AlterExtensionStmt" | "AlterExtensionContentsStmt" => {
                Err(refusal::code_block("CREATE / ALTER EXTENSION"))
            }
            "CreatePLangStmt" => Err(refusal::code_block("CREATE LANGUAGE")),
            "CreateTransformStmt" => Err(refusal::code_block("CREATE TRANSFORM")),
            "CreateEventTrigStmt" | "AlterEventTrigStmt" => Err(refusal::code_block("CREATE EVENT TRIGGER")),
            "AlterRoleSetStmt" => Err(refusal::settings_persisted("ALTER ROLE ... SET")),
            "AlterDatabaseSetStmt" => Err(refusal::settings_persisted("ALTER DATABASE ... SET")),
            "AlterSystemStmt" => Err(refusal::settings_persisted("ALTER SYSTEM")),
            "CreateRoleStmt" => Err(refusal::role_management("CREATE ROLE")),
            "AlterRoleStmt" => Err(refusal::role_management("ALTER ROLE")),
            "DropRoleStmt" => Err(refusal::role_management("DROP ROLE")),
            "GrantRoleStmt" => Err(refusal::role_management("GRANT / REVOKE of a role")),
            "ListenStmt" | "NotifyStmt" | "UnlistenStmt" => {
                // Top-level ones are rewritten by the caller; one stored in a
                // rule would send to an unscoped channel.
                if tree.parent(i).is_some() {
                    Err(refusal::nested_notify())
                } else {
                    Ok(())
                }
            }
            "RangeVar" => check_range_var(tree, i),
            "LockStmt" if !HARMLESS_LOCK_MODES.contains(&tree.int_field(i, "mode")) => Err(refusal::table_lock()),
            "TransactionStmt" => {
                let kind = tree.int_field(i, "kind");
                match TWO_PHASE_KINDS.iter().find(|(k, _)| *k == kind) {
                    Some((_, what)) => Err(refusal::two_phase(what)),
                    None => Ok(()),
                }
            }
            "ExplainStmt" if !self.allow_explain => Err(refusal::explain()),
            _ => Ok(()),
        }
    }

    fn check_variable_set(&self, tree: &Tree, i: usize) -> Result<(), Refusal> {
        let mut nargs = 0usize;
        let mut first_value = None;
        let mut first_constant = None;
        for (n, arg) in tree.list(i, "args").enumerate() {
            nargs = nargs.saturating_add(1);
            if n == 0 {
                first_value = string_constant(tree, arg);
                first_constant = scalar_constant(tree, arg);
            }
        }
        let req = SetRequest {
            kind: tree.int_field(i, "kind"),
            name: tree.str_field(i, "name"),
            first_value,
            first_constant,
            nargs,
        };
        self.settings.check_set(&req)
    }

    fn check_func_call(&self, tree: &Tree, i: usize) -> Result<(), Refusal> {
        let Some(name) = tree.list(i, "funcname").last().and_then(|n| tree.string_node(n)) else {
            return Err(refusal::internal());
        };
        if name.eq_ignore_ascii_case(notify::PG_NOTIFY) {
            // Scoped like NOTIFY by the caller's rewrite; only shapes it can scope.
            return notify::check_pg_notify_call(tree, i);
        }
        functions::check_call(name)?;
        if name.eq_ignore_ascii_case("set_config") {
            return self.check_set_config(tree, i);
        }
        if name.eq_ignore_ascii_case("ts_rewrite") && tree.list(i, "args").count() != 3 {
            // ts_rewrite(query, 'SELECT ...') runs the given SQL text.
            return Err(refusal::dynamic_sql(name));
        }
        Ok(())
    }

    fn check_set_config(&self, tree: &Tree, i: usize) -> Result<(), Refusal> {
        if tree.bool_field(i, "func_variadic") || tree.bool_field(i, "agg_star") {
            return Err(refusal::set_config_not_constant());
        }
        let mut args = tree.list(i, "args");
        let Some(first) = args.next() else {
            return Err(refusal::set_config_not_constant());
        };
        if tree.list(i, "args").any(|a| tree.ty(a) == Some("NamedArgExpr")) {
            return Err(refusal::set_config_not_constant());
        }
        let Some(setting) = constant_text(tree, first) else {
            return Err(refusal::set_config_not_constant());
        };
        self.settings.check_set_config_name(setting)?;
        if self.settings.is_limited(setting) {
            let value = tree.list(i, "args").nth(1).and_then(|v| constant_text(tree, v));
            self.settings.check_set_config_value(setting, value)?;
        }
        Ok(())
    }
}

/// Whether the list `field` of item `i` holds a `DefElem` named `name`.
fn has_option(tree: &Tree, i: usize, field: &str, name: &str) -> bool {
    tree.list(i, field)
        .any(|d| tree.ty(d) == Some("DefElem") && tree.str_field(d, "defname").eq_ignore_ascii_case(name))
}

/// A boolean constant: `true`/`false` (`Boolean`), or a string PostgreSQL
/// reads as a boolean (`'t'`, `'on'`, ...), cast or not.
fn bool_constant(tree: &Tree, i: usize) -> Option<bool> {
    let node = if tree.ty(i) == Some("TypeCast") {
        tree.field(i, "arg")?
    } else {
        i
    };
    if tree.ty(node) != Some("AConst") {
        return None;
    }
    let val = tree.field(node, "val")?;
    match tree.ty(val)? {
        "Boolean" => Some(tree.bool_field(val, "boolval")),
        "String" => {
            let v = tree.string_node(val)?;
            if crate::pin::is_pg_true(v) {
                Some(true)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// A plain string constant: `A_Const` holding a `String`.
fn string_constant(tree: &Tree, i: usize) -> Option<&str> {
    if tree.ty(i) != Some("AConst") {
        return None;
    }
    let val = tree.field(i, "val")?;
    tree.string_node(val)
}

/// Any constant a `SET` value can be (string, integer or decimal), as text.
fn scalar_constant(tree: &Tree, i: usize) -> Option<String> {
    if tree.ty(i) != Some("AConst") {
        return None;
    }
    let val = tree.field(i, "val")?;
    match tree.ty(val)? {
        "String" => tree.string_node(val).map(str::to_owned),
        "Integer" => Some(tree.int_field(val, "ival").to_string()),
        "Float" => Some(tree.str_field(val, "fval").to_owned()),
        _ => None,
    }
}

/// A string constant, optionally cast to plain `text` (no type modifiers:
/// `varchar(n)` would truncate and `char(n)` would trim, changing the value).
fn constant_text(tree: &Tree, i: usize) -> Option<&str> {
    if let Some(s) = string_constant(tree, i) {
        return Some(s);
    }
    if tree.ty(i) != Some("TypeCast") {
        return None;
    }
    let ty = tree.field(i, "type_name")?;
    let names: Vec<&str> = tree
        .list(ty, "names")
        .map(|n| tree.string_node(n))
        .collect::<Option<Vec<&str>>>()?;
    let plain_text = matches!(names.as_slice(), ["text"] | ["pg_catalog", "text"]);
    let no_modifiers = tree.list(ty, "typmods").next().is_none()
        && tree.list(ty, "array_bounds").next().is_none()
        && !tree.bool_field(ty, "setof")
        && !tree.bool_field(ty, "pct_type");
    if !(plain_text && no_modifiers) {
        return None;
    }
    string_constant(tree, tree.field(i, "arg")?)
}

/// Whether string item `i` is the text of a literal (`'...'`), a comment or a
/// channel/payload, rather than a name the server resolves.
fn is_literal(tree: &Tree, i: usize) -> bool {
    let Some(item) = tree.items.get(i) else {
        return false;
    };
    let Some(parent) = tree.parent(i) else {
        return false;
    };
    match tree.ty(parent) {
        Some("String") => tree.parent(parent).is_some_and(|gp| tree.ty(gp) == Some("AConst")),
        Some("CommentStmt") => item.field == "comment",
        Some("NotifyStmt") => item.field == "payload" || item.field == "conditionname",
        Some("ListenStmt" | "UnlistenStmt") => item.field == "conditionname",
        _ => false,
    }
}

/// Whether string item `i` is the last part of a function call's name.
fn is_called_function_name(tree: &Tree, i: usize) -> bool {
    let Some(string_node) = tree.parent(i) else {
        return false;
    };
    let Some(seq) = tree.parent(string_node) else {
        return false;
    };
    let Some(call) = tree.parent(seq) else {
        return false;
    };
    tree.ty(call) == Some("FuncCall")
        && tree.items.get(seq).is_some_and(|s| s.field == "funcname")
        && tree.list(call, "funcname").last() == Some(string_node)
}

fn check_string(tree: &Tree, i: usize) -> Result<(), Refusal> {
    if is_literal(tree, i) {
        return Ok(());
    }
    let Some(name) = tree.str_at(i) else {
        return Ok(());
    };
    if name.eq_ignore_ascii_case(notify::PG_NOTIFY) && is_called_function_name(tree, i) {
        // Checked with its call (`check_func_call`).
        return Ok(());
    }
    functions::check_identifier(name)?;
    if name.eq_ignore_ascii_case("set_config") && !is_called_function_name(tree, i) {
        // A reference that is not a direct call (operator, cast, trigger or
        // aggregate definition, ALTER FUNCTION, ...).
        return Err(refusal::set_config_elsewhere());
    }
    Ok(())
}

/// `pg_settings` may be read but not written (its update rule calls
/// `set_config`), nor captured in a view, rule or trigger.
fn check_range_var(tree: &Tree, i: usize) -> Result<(), Refusal> {
    if !functions::is_pg_settings(tree.str_field(i, "relname")) {
        return Ok(());
    }
    if let (Some(item), Some(parent)) = (tree.items.get(i), tree.parent(i)) {
        if item.field == "relation" && tree.ty(parent).is_some_and(|t| WRITE_STATEMENTS.contains(&t)) {
            return Err(refusal::pg_settings_write());
        }
    }
    let mut cur = tree.parent(i);
    while let Some(p) = cur {
        if tree.ty(p).is_some_and(|t| STORED_QUERY_STATEMENTS.contains(&t)) {
            return Err(refusal::pg_settings_write());
        }
        cur = tree.parent(p);
    }
    Ok(())
}
