//! Percent-encoding (RFC 3986 §2.1) of the return paths the proxy puts in
//! its own redirects (`rd`, `next`), and decoding of the ones it reads back
//! and of the admin API's user names.

/// Percent-encodes everything but unreserved characters and `/`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes and `+` (form encoding) into text; invalid UTF-8
/// becomes U+FFFD, a malformed escape stays as it is.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`, as in
/// a form-encoded query) into text, refusing what a lenient decoder would
/// guess at: `None` for a malformed escape or bytes that are not UTF-8.
pub fn percent_decode_exact(s: &str, plus_is_space: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |at: usize| b.get(at).and_then(|c| (*c as char).to_digit(16));
        match b[i] {
            b'%' => {
                out.push((hex(i + 1)? * 16 + hex(i + 2)?) as u8);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rd_is_percent_encoded() {
        assert_eq!(percent_encode("/a b?x=1&y=/"), "/a%20b%3Fx%3D1%26y%3D/");
    }

    #[test]
    fn decodes_escapes_and_plus() {
        assert_eq!(percent_decode("%2Fa%20b+c"), "/a b c");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn exact_decoding_refuses_what_it_cannot_read() {
        assert_eq!(percent_decode_exact("a%2Fb+c", true).unwrap(), "a/b c");
        assert_eq!(percent_decode_exact("a+b%2B", false).unwrap(), "a+b+");
        assert_eq!(percent_decode_exact("%C3%A9", false).unwrap(), "é");
        for bad in ["%zz", "%4", "%", "%FF"] {
            assert_eq!(percent_decode_exact(bad, false), None, "{bad}");
        }
    }
}
