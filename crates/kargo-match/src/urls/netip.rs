//! Go's `net/netip.ParseAddr`, as far as `net/url` needs it. Pure.

/// Returns `Some(true)` for an IPv4 address, `Some(false)` for an IPv6 one (zone allowed),
/// `None` when the text is not an address.
pub(super) fn parse_addr(s: &[u8]) -> Option<bool> {
    for &c in s {
        match c {
            b'.' => return ipv4_fields(s).then_some(true),
            b':' => return ipv6(s).then_some(false),
            b'%' => return None,
            _ => {}
        }
    }
    None
}

/// `parseIPv4Fields`: four decimal fields, no leading zeros, each at most 255.
fn ipv4_fields(s: &[u8]) -> bool {
    let (mut val, mut pos, mut digits) = (0u32, 0, 0);
    for (i, &c) in s.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                if digits == 1 && val == 0 {
                    return false;
                }
                val = val * 10 + u32::from(c - b'0');
                digits += 1;
                if val > 255 {
                    return false;
                }
            }
            b'.' => {
                if i == 0 || i == s.len() - 1 || s.get(i - 1) == Some(&b'.') || pos == 3 {
                    return false;
                }
                pos += 1;
                val = 0;
                digits = 0;
            }
            _ => return false,
        }
    }
    pos == 3
}

/// `parseIPv6`: eight 16-bit groups, one `::`, an optional trailing IPv4 and zone.
fn ipv6(input: &[u8]) -> bool {
    let mut s = match input.iter().position(|&b| b == b'%') {
        Some(i) if i + 1 == input.len() => return false,
        Some(i) => &input[..i],
        None => input,
    };
    let mut ellipsis: Option<usize> = None;
    if s.starts_with(b"::") {
        ellipsis = Some(0);
        s = &s[2..];
        if s.is_empty() {
            return true;
        }
    }
    let mut i = 0;
    while i < 16 {
        let mut off = 0;
        let mut acc: u32 = 0;
        while let Some(&c) = s.get(off) {
            let digit = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => break,
            };
            acc = (acc << 4) + u32::from(digit);
            if off > 3 || acc > 0xffff {
                return false;
            }
            off += 1;
        }
        if off == 0 {
            return false;
        }
        if s.get(off) == Some(&b'.') {
            if (ellipsis.is_none() && i != 12) || i + 4 > 16 || !ipv4_fields(s) {
                return false;
            }
            s = &[];
            i += 4;
            break;
        }
        i += 2;
        s = &s[off..];
        if s.is_empty() {
            break;
        }
        if s[0] != b':' || s.len() == 1 {
            return false;
        }
        s = &s[1..];
        if s[0] == b':' {
            if ellipsis.is_some() {
                return false;
            }
            ellipsis = Some(i);
            s = &s[1..];
            if s.is_empty() {
                break;
            }
        }
    }
    s.is_empty() && ((i < 16 && ellipsis.is_some()) || (i == 16 && ellipsis.is_none()))
}
