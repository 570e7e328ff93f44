//! Twilio's webhook signature (`X-Twilio-Signature`): base64 HMAC-SHA1, keyed with the auth
//! token, of the URL Twilio requested followed by every POST parameter's name and value, sorted
//! by name. For JSON bodies the URL carries `bodySHA256` (hex SHA-256 of the raw body) and no
//! parameters are appended. Checked exactly as the official helper libraries do: the URL is tried
//! without its port and with the scheme's default port, repeated values of one name count once,
//! sorted, and names and values sort by UTF-16 code units (JavaScript's order, which is what
//! `twilio` on npm uses; it differs from byte order only for characters outside the BMP).

use std::cmp::Ordering;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The header Twilio signs its requests with.
pub const HEADER: &str = "X-Twilio-Signature";

fn utf16_order(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// The string that is signed: `url`, then for each parameter name (sorted) each of its distinct
/// values (sorted) as `name` + `value`.
fn signed_data(url: &str, params: &[(String, String)]) -> String {
    let mut names: Vec<&str> = params.iter().map(|(name, _)| name.as_str()).collect();
    names.sort_by(|a, b| utf16_order(a, b));
    names.dedup();
    let mut data = url.to_owned();
    for name in names {
        let mut values: Vec<&str> = params
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        values.sort_by(|a, b| utf16_order(a, b));
        values.dedup();
        for value in values {
            data.push_str(name);
            data.push_str(value);
        }
    }
    data
}

/// The signature Twilio sends for a request to `url` with these form parameters.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()) else {
        return String::new();
    };
    mac.update(signed_data(url, params).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Hex SHA-256 of a JSON body: the `bodySHA256` query parameter Twilio adds.
pub fn body_sha256(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// `scheme://`, user info (with its `@`), host, `:port` (or empty) and the rest, split without
/// normalising anything: the path and query must stay exactly as Twilio signed them.
struct UrlParts<'a> {
    scheme: &'a str,
    user_info: &'a str,
    host: &'a str,
    port: &'a str,
    rest: &'a str,
}

fn split(url: &str) -> Option<UrlParts<'_>> {
    let scheme_end = url.find("://")?;
    let scheme_name = &url[..scheme_end];
    let mut chars = scheme_name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
    {
        return None;
    }
    let after_scheme = scheme_end + 3;
    let authority_len = url[after_scheme..]
        .find(['/', '?', '#'])
        .unwrap_or(url.len() - after_scheme);
    let authority = &url[after_scheme..after_scheme + authority_len];
    let (user_info, host_and_port) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    // A colon starts the port only after the closing bracket of an IPv6 literal.
    let search_from = host_and_port.rfind(']').map_or(0, |i| i + 1);
    let (host, port) = match host_and_port[search_from..].find(':') {
        Some(colon) => host_and_port.split_at(search_from + colon),
        None => (host_and_port, ""),
    };
    Some(UrlParts {
        scheme: &url[..after_scheme],
        user_info,
        host,
        port,
        rest: &url[after_scheme + authority_len..],
    })
}

/// `url` without its port (as received if it had none).
fn without_port(url: &str) -> String {
    match split(url) {
        Some(p) => format!("{}{}{}{}", p.scheme, p.user_info, p.host, p.rest),
        None => url.to_owned(),
    }
}

/// `url` with the scheme's default port when it has none (as received otherwise).
fn with_port(url: &str) -> String {
    match split(url) {
        Some(p) if p.port.is_empty() => {
            let port = if p.scheme.eq_ignore_ascii_case("https://") {
                ":443"
            } else {
                ":80"
            };
            format!("{}{}{}{port}{}", p.scheme, p.user_info, p.host, p.rest)
        }
        _ => url.to_owned(),
    }
}

fn matches(expected: &str, given: &str) -> bool {
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

/// Whether `signature` is Twilio's for a form POST to `url` with `params`.
pub fn verify(auth_token: &str, signature: &str, url: &str, params: &[(String, String)]) -> bool {
    [without_port(url), with_port(url)]
        .iter()
        .any(|candidate| matches(&sign(auth_token, candidate, params), signature))
}

/// Whether `signature` is Twilio's for a JSON POST of `body` to `url` (whose `bodySHA256` query
/// parameter must be the body's hash).
pub fn verify_json(auth_token: &str, signature: &str, url: &str, body: &[u8]) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    let Some(claimed) = parsed
        .query_pairs()
        .find(|(name, _)| name == "bodySHA256")
        .map(|(_, value)| value.into_owned())
    else {
        return false;
    };
    verify(auth_token, signature, url, &[]) && matches(&body_sha256(body), &claimed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    // The example of Twilio's security documentation and of every helper library's tests.
    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    fn doc_params() -> Vec<(String, String)> {
        params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ])
    }

    #[test]
    fn matches_the_published_test_vector() {
        assert_eq!(
            sign(TOKEN, URL, &doc_params()),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        assert!(verify(
            TOKEN,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ=",
            URL,
            &doc_params()
        ));
        assert!(!verify(
            TOKEN,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ=",
            URL,
            &params(&[])
        ));
        assert!(!verify(
            "54321",
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ=",
            URL,
            &doc_params()
        ));
    }

    #[test]
    fn the_default_port_may_be_there_or_not() {
        let signed_with = sign(
            TOKEN,
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &doc_params(),
        );
        assert!(verify(TOKEN, &signed_with, URL, &doc_params()));
        let signed_without = sign(TOKEN, URL, &doc_params());
        assert!(verify(
            TOKEN,
            &signed_without,
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &doc_params()
        ));
        let http = sign(TOKEN, "http://example.test:80/hook", &[]);
        assert!(verify(TOKEN, &http, "http://example.test/hook", &[]));
    }

    #[test]
    fn json_bodies_are_checked_by_their_hash() {
        let body = br#"{"property": "value", "boolean": true}"#;
        let hash = body_sha256(body);
        assert_eq!(
            hash,
            "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
        );
        let url = format!("https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256={hash}");
        let signature = sign(TOKEN, &url, &[]);
        assert!(verify_json(TOKEN, &signature, &url, body));
        assert!(!verify_json(TOKEN, &signature, &url, b"{}"));
        assert!(!verify_json(TOKEN, &sign(TOKEN, URL, &[]), URL, body));
    }

    #[test]
    fn repeated_values_count_once_and_sort() {
        let a = sign(TOKEN, URL, &params(&[("k", "b"), ("k", "a"), ("k", "b")]));
        let b = sign(TOKEN, URL, &params(&[("k", "a"), ("k", "b")]));
        assert_eq!(a, b);
    }

    #[test]
    fn urls_split_like_the_node_library() {
        assert_eq!(
            without_port("https://user:pw@h.test:8443/p?q=1"),
            "https://user:pw@h.test/p?q=1"
        );
        assert_eq!(with_port("https://h.test/p"), "https://h.test:443/p");
        assert_eq!(with_port("http://[::1]/p"), "http://[::1]:80/p");
        assert_eq!(without_port("http://[::1]:8080"), "http://[::1]");
        assert_eq!(with_port("not a url"), "not a url");
    }
}
