//! The parts of Go 1.26's `net/url` that decide whether a string parses and what its `Host`
//! is. Pure.
//!
//! Kept to the paths Kargo exercises: `url.Parse` (NormalizeChart's validity check,
//! go-containerregistry's registry check) and `url.ParseRequestURI` (oras-go's registry check).

/// What the callers read from a parsed URL.
pub(super) struct Url {
    /// `URL.Host` after unescaping (empty without an authority).
    pub(super) host: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Host,
    Zone,
    Path,
    UserPassword,
    Fragment,
}

/// Characters `shouldEscape(c, encodeHost)` leaves alone.
fn is_host_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!$&'()*+,;=:[]<>\"-_.~".contains(&c)
}

fn unhex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

/// `unescape`: `%XX` must be well formed; in a host only non-ASCII bytes (and `%25`) may be
/// escaped and only host characters may appear; in a zone escapes may only produce host
/// characters or a space.
fn unescape(s: &[u8], mode: Mode) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        if c == b'%' {
            let (Some(&h), Some(&l)) = (s.get(i + 1), s.get(i + 2)) else {
                return Err("invalid URL escape");
            };
            if !h.is_ascii_hexdigit() || !l.is_ascii_hexdigit() {
                return Err("invalid URL escape");
            }
            let is_25 = h == b'2' && l == b'5';
            let v = (unhex(h) << 4) | unhex(l);
            if mode == Mode::Host && unhex(h) < 8 && !is_25 {
                return Err("invalid URL escape");
            }
            if mode == Mode::Zone && !is_25 && v != b' ' && !is_host_byte(v) {
                return Err("invalid URL escape");
            }
            out.push(v);
            i += 3;
        } else {
            if matches!(mode, Mode::Host | Mode::Zone) && c < 0x80 && !is_host_byte(c) {
                return Err("invalid character in host name");
            }
            out.push(c);
            i += 1;
        }
    }
    Ok(out)
}

fn cut(s: &[u8], sep: u8) -> (&[u8], Option<&[u8]>) {
    match s.iter().position(|&b| b == sep) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

/// `url.Parse`: the fragment is cut off first and checked for bad escapes.
pub(super) fn parse(raw: &str) -> Result<Url, &'static str> {
    let (u, frag) = cut(raw.as_bytes(), b'#');
    let url = parse_inner(u, false)?;
    if let Some(frag) = frag.filter(|f| !f.is_empty()) {
        unescape(frag, Mode::Fragment)?;
    }
    Ok(url)
}

/// `url.ParseRequestURI`: no fragment handling.
pub(super) fn parse_request_uri(raw: &str) -> Result<Url, &'static str> {
    parse_inner(raw.as_bytes(), true)
}

/// `getScheme`: `[A-Za-z][A-Za-z0-9+.-]*:`, an error for a leading `:`.
fn get_scheme(raw: &[u8]) -> Result<(Vec<u8>, &[u8]), &'static str> {
    for (i, &c) in raw.iter().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return Err("missing protocol scheme"),
            b':' => return Ok((raw[..i].to_ascii_lowercase(), &raw[i + 1..])),
            _ => return Ok((Vec::new(), raw)),
        }
    }
    Ok((Vec::new(), raw))
}

fn parse_inner(raw: &[u8], via_request: bool) -> Result<Url, &'static str> {
    let no_host = Url { host: Vec::new() };
    if raw.iter().any(|&b| b < b' ' || b == 0x7f) {
        return Err("invalid control character in URL");
    }
    if raw.is_empty() && via_request {
        return Err("empty url");
    }
    if raw == b"*" {
        return Ok(no_host);
    }
    let (scheme, rest) = get_scheme(raw)?;
    let single_trailing_query =
        rest.ends_with(b"?") && rest.iter().filter(|&&b| b == b'?').count() == 1;
    let rest = if single_trailing_query {
        &rest[..rest.len() - 1]
    } else {
        cut(rest, b'?').0
    };
    if !rest.starts_with(b"/") {
        if !scheme.is_empty() {
            // A rootless path after a scheme is opaque and not checked further.
            return Ok(no_host);
        }
        if via_request {
            return Err("invalid URI for request");
        }
        if cut(rest, b'/').0.contains(&b':') {
            return Err("first path segment in URL cannot contain colon");
        }
    }
    let mut host = Vec::new();
    let mut path = rest;
    if (!scheme.is_empty() || !via_request && !rest.starts_with(b"///")) && rest.starts_with(b"//")
    {
        let after = &rest[2..];
        let (authority, remainder) = match after.iter().position(|&b| b == b'/') {
            Some(i) => (&after[..i], &after[i..]),
            None => (after, &b""[..]),
        };
        host = parse_authority(&scheme, authority)?;
        path = remainder;
    }
    unescape(path, Mode::Path)?;
    Ok(Url { host })
}

fn valid_userinfo(s: &[u8]) -> bool {
    s.iter()
        .all(|&c| c.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&c))
}

fn parse_authority(scheme: &[u8], authority: &[u8]) -> Result<Vec<u8>, &'static str> {
    let at = authority.iter().rposition(|&b| b == b'@');
    let host = parse_host(scheme, at.map_or(authority, |i| &authority[i + 1..]))?;
    if let Some(i) = at {
        let userinfo = &authority[..i];
        if !valid_userinfo(userinfo) {
            return Err("invalid userinfo");
        }
        let (user, password) = cut(userinfo, b':');
        unescape(user, Mode::UserPassword)?;
        if let Some(password) = password {
            unescape(password, Mode::UserPassword)?;
        }
    }
    Ok(host)
}

fn valid_optional_port(port: &[u8]) -> bool {
    match port.split_first() {
        None => true,
        Some((&b':', digits)) => digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    }
}

/// `parseHost`, Go 1.26 with the http/https-only strict colons of go.dev/issue/78077.
fn parse_host(scheme: &[u8], host: &[u8]) -> Result<Vec<u8>, &'static str> {
    match host.iter().rposition(|&b| b == b'[') {
        Some(0) => {
            let close = host
                .iter()
                .rposition(|&b| b == b']')
                .ok_or("missing ']' in host")?;
            let colon_port = &host[close + 1..];
            if !valid_optional_port(colon_port) {
                return Err("invalid port after host");
            }
            let hostname = &host[1..close];
            let unescaped = match hostname.windows(3).position(|w| w == b"%25") {
                Some(z) => {
                    let mut h = unescape(&hostname[..z], Mode::Host)?;
                    h.extend(unescape(&hostname[z..], Mode::Zone)?);
                    h
                }
                None => unescape(hostname, Mode::Host)?,
            };
            match super::netip::parse_addr(&unescaped) {
                Some(false) => Ok([b"[".as_slice(), &unescaped, b"]", colon_port].concat()),
                Some(true) => Err("invalid IP-literal"),
                None => Err("invalid host"),
            }
        }
        Some(_) => Err("invalid IP-literal"),
        None => {
            if let Some(first) = host.iter().position(|&b| b == b':') {
                let last = host.iter().rposition(|&b| b == b':').unwrap_or(first);
                let strict = scheme == b"http" || scheme == b"https";
                let i = if strict { first } else { last };
                if !valid_optional_port(&host[i..]) {
                    return Err("invalid port after host");
                }
            }
            unescape(host, Mode::Host)
        }
    }
}
