//! `Host` header syntax, checked and never used: HTTP answers an invalid `Host` with 400
//! (RFC 9112 §3.2), and lambda_http 1.3.2 panics on one its URL parser rejects (issue 9).
//!
//! Pure.

use lambda_http::http::HeaderMap;
use lambda_http::http::header::HOST;

use super::ErrorKind;

/// Every `Host` value in `headers` is valid (or there is none).
///
/// # Errors
/// [`ErrorKind::Host`] otherwise.
pub(super) fn check(headers: &HeaderMap) -> Result<(), ErrorKind> {
    let valid = headers
        .get_all(HOST)
        .iter()
        .all(|v| v.to_str().is_ok_and(valid_host));
    valid.then_some(()).ok_or(ErrorKind::Host)
}

/// Whether a `Host` value is `uri-host [":" port]` (RFC 9110 §7.2, RFC 3986 §3.2.2–3.2.3):
/// an IP literal in brackets or a reg-name (IPv4 addresses are reg-names too), then digits.
fn valid_host(value: &str) -> bool {
    let (host_ok, rest) = match value.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((literal, rest)) => (ip_literal(literal), rest),
            None => return false,
        },
        None => {
            let end = value.find(':').unwrap_or(value.len());
            (reg_name(&value[..end]), &value[end..])
        }
    };
    host_ok
        && (rest.is_empty()
            || rest
                .strip_prefix(':')
                .is_some_and(|port| port.bytes().all(|b| b.is_ascii_digit())))
}

fn unreserved_or_sub_delim(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b)
}

fn reg_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else if unreserved_or_sub_delim(bytes[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

fn ip_literal(literal: &str) -> bool {
    if literal.parse::<std::net::Ipv6Addr>().is_ok() {
        return true;
    }
    // IPvFuture: "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
    let future = literal
        .strip_prefix(['v', 'V'])
        .and_then(|r| r.split_once('.'));
    future.is_some_and(|(version, address)| {
        !version.is_empty()
            && version.bytes().all(|b| b.is_ascii_hexdigit())
            && !address.is_empty()
            && address
                .bytes()
                .all(|b| unreserved_or_sub_delim(b) || b == b':')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_values_follow_rfc_3986() {
        for good in [
            "abc123defg.execute-api.us-east-1.amazonaws.com",
            "example.com:443",
            "localhost:",
            "127.0.0.1:3000",
            "[::1]",
            "[2001:db8::1]:8443",
            "[v1.fe80::a+en1]",
            "xn--bcher-kva.example",
            "a%20b",
            "",
        ] {
            assert!(valid_host(good), "{good:?}");
        }
        for bad in [
            "abc123defg execute-api.us-east-1.amazonaws.com",
            "example.com:https",
            "example.com:443:443",
            "[::1",
            "[::1]x",
            "[not-ip]",
            "user@example.com",
            "example.com/path",
            "a%2",
            "bücher.example",
            "exa<mple>.com",
        ] {
            assert!(!valid_host(bad), "{bad:?}");
        }
    }
}
