//! The headers of the wire contract, `contract/wire.toml` at the repository's root, as the client
//! reads and sends them: a fake server answers with the file's header names, and the client must
//! understand them (the error texts are checked in `src/error.rs`).

use std::collections::BTreeMap;

use serde::Deserialize;
use throttle_client::{Error, LockState, PeerId};

use crate::support::FakeServer;

#[derive(Deserialize)]
struct Contract {
    headers: BTreeMap<String, Header>,
}

#[derive(Deserialize)]
struct Header {
    name: String,
    value: Option<String>,
}

/// The name and fixed value of the header `key` of the contract.
fn header(key: &str) -> (String, Option<String>) {
    let contract: Contract =
        toml::from_str(include_str!("../../../../contract/wire.toml")).expect("contract/wire.toml");
    let header = contract
        .headers
        .get(key)
        .unwrap_or_else(|| panic!("no header `{key}` in contract/wire.toml"));
    (header.name.clone(), header.value.clone())
}

#[test]
fn a_grant_carries_its_fencing_token_in_the_contracts_header() {
    let (name, _) = header("fencing_token");
    let fake = FakeServer::answering_with(200, vec![(name, "7".into())], "Acquired");
    let state = fake
        .client()
        .acquire_state(PeerId(1), "A", 1, None, None)
        .unwrap();
    assert_eq!(
        state,
        LockState::Acquired {
            fencing_token: Some(7)
        }
    );
}

#[test]
fn an_expired_peer_is_told_by_the_contracts_header_and_value() {
    let (name, value) = header("peer_state");
    let value = value.expect("the peer state header has a value");
    let fake = FakeServer::answering_with(400, vec![(name, value)], "Unknown peer");
    let error = fake
        .client()
        .acquire_state(PeerId(1), "A", 1, None, None)
        .unwrap_err();
    assert!(matches!(error, Error::LockLost), "{error:?}");
}

#[test]
fn the_token_is_sent_in_the_contracts_header_and_scheme() {
    let (name, scheme) = header("authorization");
    let scheme = scheme.expect("the authorization header has a scheme");
    let fake = FakeServer::answering(200, "Ok");
    fake.client().with_token("secret").health().unwrap();
    let heads = fake.heads();
    let expected = format!("{scheme} secret");
    let sent = heads[0].lines().find_map(|line| {
        let (field, value) = line.split_once(':')?;
        field.eq_ignore_ascii_case(&name).then(|| value.trim())
    });
    assert_eq!(sent, Some(expected.as_str()), "{heads:#?}");
}

#[test]
fn a_client_of_several_members_follows_the_leader_the_contracts_headers_name() {
    let (member, _) = header("member");
    let (leader, _) = header("leader");
    // Member 1 follows member 2; member 2 leads.
    let follower = FakeServer::answering_with(
        200,
        vec![(member.clone(), "1".into()), (leader.clone(), "2".into())],
        "Ok",
    );
    let leading =
        FakeServer::answering_with(200, vec![(member, "2".into()), (leader, "2".into())], "Ok");
    let client = throttle_client::Client::for_members([follower.url(), leading.url()]);
    client.health().unwrap();
    assert_eq!(client.base_url(), leading.url());
    client.health().unwrap();
    client.health().unwrap();
    assert_eq!((follower.requests(), leading.requests()), (1, 2));
    assert_eq!(client.base_url(), leading.url());
}
