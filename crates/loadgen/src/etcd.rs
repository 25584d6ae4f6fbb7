//! etcd's lock cycle, for `scripts/bench --cluster`'s comparison: what etcd's `concurrency`
//! package does for one uncontended lock, over etcd 3.4's JSON gateway (grpc-gateway): grant a
//! lease (the session), lock a name with it, unlock the key the lock returned, revoke the lease
//! (the session's end). Four requests, each committed through etcd's Raft log.
//!
//! Not an etcd client: only these four calls, the fields they need, and base64 for the byte
//! fields, which the gateway takes and gives in base64. The parsing is a function of the body,
//! tested here without a server.

use crate::http::Client;

/// One cycle on the lock `name` (base64), with a lease of `ttl_secs`.
pub fn lock_cycle(client: &mut Client, name: &str, ttl_secs: u64) -> Result<(), String> {
    let granted = client.expect(
        "POST",
        "/v3/lease/grant",
        &format!(r#"{{"TTL":{ttl_secs}}}"#),
        &[200],
    )?;
    let lease = field(&granted.body, "ID").map_err(|e| format!("lease/grant: {e}"))?;
    let locked = client.expect(
        "POST",
        "/v3/lock/lock",
        &format!(r#"{{"name":"{name}","lease":"{lease}"}}"#),
        &[200],
    )?;
    let key = field(&locked.body, "key").map_err(|e| format!("lock/lock: {e}"))?;
    client.expect(
        "POST",
        "/v3/lock/unlock",
        &format!(r#"{{"key":"{key}"}}"#),
        &[200],
    )?;
    client.expect(
        "POST",
        "/v3/lease/revoke",
        &format!(r#"{{"ID":"{lease}"}}"#),
        &[200],
    )?;
    Ok(())
}

/// The top-level field `name` of a JSON answer, as text: the gateway writes 64-bit integers
/// (a lease ID) as strings, but a number is taken too. Only digits and base64 are accepted, so
/// the value can go back into a request body unescaped.
pub fn field(body: &[u8], name: &str) -> Result<String, String> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| format!("not JSON: {:?}", String::from_utf8_lossy(body)))?;
    let text = match value.get(name) {
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(serde_json::Value::Number(number)) => number.to_string(),
        _ => return Err(format!("no {name:?} in {value}")),
    };
    if text.is_empty()
        || !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
    {
        return Err(format!("unexpected {name:?}: {text:?}"));
    }
    Ok(text)
}

/// Standard base64 with padding, as the gateway reads `bytes` fields.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_of_the_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected, "{input:?}");
        }
        assert_eq!(base64(b"bench-0"), "YmVuY2gtMA==");
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn fields_of_the_gateway_answers() {
        // As etcd 3.4.23 answers lease/grant and lock/lock.
        let grant = br#"{"header":{"cluster_id":"8570459336700167655","revision":"1"},"ID":"8699444086881990916","TTL":"60"}"#;
        assert_eq!(field(grant, "ID").as_deref(), Ok("8699444086881990916"));
        let lock = br#"{"header":{"revision":"2"},"key":"YmVuY2gtMC83OGJhYTI0ZTJkZjkzOTA2"}"#;
        assert_eq!(
            field(lock, "key").as_deref(),
            Ok("YmVuY2gtMC83OGJhYTI0ZTJkZjkzOTA2")
        );
        assert_eq!(field(br#"{"ID":42}"#, "ID").as_deref(), Ok("42"));
    }

    #[test]
    fn missing_or_odd_fields_are_errors() {
        assert_eq!(
            field(b"<html>", "ID"),
            Err("not JSON: \"<html>\"".to_owned())
        );
        let refused = field(
            br#"{"error":"etcdserver: requested lease not found","code":5}"#,
            "ID",
        );
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.starts_with("no \"ID\" in {") && e.contains("lease not found")),
            "{refused:?}"
        );
        assert_eq!(
            field(br#"{"key":"a\"b"}"#, "key"),
            Err("unexpected \"key\": \"a\\\"b\"".to_owned())
        );
        assert_eq!(
            field(br#"{"key":""}"#, "key"),
            Err("unexpected \"key\": \"\"".to_owned())
        );
        assert!(field(br#"{"key":null}"#, "key").is_err());
    }
}
