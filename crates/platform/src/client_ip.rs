//! The caller's IP address as audits record it: the peer, or the `X-Forwarded-For` entry written
//! by the outermost of the `TRUSTED_PROXY_COUNT` proxies in front of the service. Entries left of
//! it are whatever the client sent, so they are never believed.

use std::net::{IpAddr, SocketAddr};

use actix_web::{HttpRequest, web};

/// How many proxies append to `X-Forwarded-For` in front of the service; registered as app data
/// by [`crate::Application::build`] from [`crate::config::HttpConfig::trusted_proxies`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub usize);

/// The client's address: with N trusted proxies, the Nth `X-Forwarded-For` entry from the right
/// (the leftmost one if the request passed fewer proxies); with none, or without the header, the
/// peer address. `None` when neither is known or the chosen entry is not an IP address.
pub fn client_ip(req: &HttpRequest) -> Option<String> {
    let trusted = req
        .app_data::<web::Data<TrustedProxies>>()
        .map_or(0, |t| t.0);
    let peer = || req.peer_addr().map(|a| a.ip().to_string());
    if trusted == 0 {
        return peer();
    }
    // Several headers are one list, in order (RFC 7230 §3.2.2).
    let entries: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if entries.is_empty() {
        return peer();
    }
    let index = entries.len().saturating_sub(trusted);
    entries.get(index).and_then(|entry| parse(entry))
}

/// An entry as proxies write it: `203.0.113.7`, `203.0.113.7:5432`, `2001:db8::1`, `[2001:db8::1]:80`.
fn parse(entry: &str) -> Option<String> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .map(|ip| ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn ip(trusted: usize, forwarded: &[&str]) -> Option<String> {
        let mut req = TestRequest::default()
            .peer_addr("10.0.0.9:41000".parse().unwrap_or_else(|e| panic!("{e}")))
            .app_data(web::Data::new(TrustedProxies(trusted)));
        for value in forwarded {
            req = req.append_header(("X-Forwarded-For", *value));
        }
        client_ip(&req.to_http_request())
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() {
        assert_eq!(ip(0, &["203.0.113.7"]), Some("10.0.0.9".to_owned()));
        assert_eq!(ip(0, &[]), Some("10.0.0.9".to_owned()));
    }

    #[test]
    fn the_entry_of_the_outermost_trusted_proxy_counts_not_what_the_client_prepended() {
        // The client forged 1.2.3.4; the one proxy saw 203.0.113.7.
        assert_eq!(
            ip(1, &["1.2.3.4, 203.0.113.7"]),
            Some("203.0.113.7".to_owned())
        );
        // Two proxies: the second appended the first's address.
        assert_eq!(
            ip(2, &["1.2.3.4, 203.0.113.7, 10.1.1.1"]),
            Some("203.0.113.7".to_owned())
        );
        // Split over two headers, one list.
        assert_eq!(
            ip(2, &["1.2.3.4, 203.0.113.7", "10.1.1.1"]),
            Some("203.0.113.7".to_owned())
        );
    }

    #[test]
    fn fewer_entries_than_proxies_take_the_leftmost_and_no_header_the_peer() {
        assert_eq!(ip(3, &["203.0.113.7"]), Some("203.0.113.7".to_owned()));
        assert_eq!(ip(1, &[]), Some("10.0.0.9".to_owned()));
    }

    #[test]
    fn ports_and_brackets_are_dropped_and_garbage_is_not_recorded() {
        assert_eq!(ip(1, &["203.0.113.7:5555"]), Some("203.0.113.7".to_owned()));
        assert_eq!(ip(1, &["[2001:db8::1]:80"]), Some("2001:db8::1".to_owned()));
        assert_eq!(ip(1, &["2001:db8::1"]), Some("2001:db8::1".to_owned()));
        assert_eq!(ip(1, &["<script>"]), None);
    }
}
