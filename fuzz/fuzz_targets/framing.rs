//! Fuzz target `framing`: raw bytes into the HTTP layer's head parser and framing rules
//! (`crates/http/src/framing.rs`), the first thing that touches bytes from the network.
//!
//! Input: the bytes a client sent on a fresh connection. Seeds: the rows of `tests/framing.rs`
//! (request smuggling arrangements and other hostile heads).
//!
//! What must hold: nothing panics; a complete head lies within the input, announces a body
//! within the limit, and has a target in origin form; a refusal is a 4xx status (or 505) with a
//! one-line reason; and the verdict does not depend on bytes after the head.
#![no_main]

use libfuzzer_sys::fuzz_target;
use throttle_http::framing::{self, Parsed};

const MAX_HEAD: usize = 8 * 1024;
const MAX_BODY: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    match framing::parse(data, MAX_HEAD, MAX_BODY) {
        Ok(Parsed::Partial) => assert!(data.len() < MAX_HEAD),
        Ok(Parsed::Complete(head)) => {
            assert!(head.head_len <= data.len() && head.head_len <= MAX_HEAD);
            assert!(head.body_len <= MAX_BODY);
            assert!(
                head.target.starts_with('/') || head.target == "*",
                "{}",
                head.target
            );
            // Whatever follows the head is the body or the next request, never part of it.
            let again = framing::parse(&data[..head.head_len], MAX_HEAD, MAX_BODY);
            match again {
                Ok(Parsed::Complete(same)) => {
                    assert_eq!(same.head_len, head.head_len);
                    assert_eq!(same.body_len, head.body_len);
                }
                other => panic!("the head alone parses differently: {other:?}"),
            }
        }
        Err(refusal) => {
            assert!((400..500).contains(&refusal.status) || refusal.status == 505);
            assert!(!refusal.reason.is_empty() && !refusal.reason.contains('\n'));
        }
    }
});
