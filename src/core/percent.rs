//! Percent-encoding of one URL component (a path segment, a query value), for
//! the registry and GitHub clients alike: pure text, so it lives in the core.

/// `s` with everything but RFC 3986's unreserved characters percent-encoded.
pub fn percent_encode(s: &str) -> String {
    s.bytes().fold(String::with_capacity(s.len()), |mut out, b| {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreserved_characters_pass() {
        assert_eq!(percent_encode("a-Z_0.9~"), "a-Z_0.9~");
        assert_eq!(percent_encode("repository:o/r:pull,push"), "repository%3Ao%2Fr%3Apull%2Cpush");
        assert_eq!(percent_encode("../ é"), "..%2F%20%C3%A9");
    }
}
