//! `.testenv/env`: `KEY=value` lines as a shell would read them.

use std::collections::HashMap;

/// Parses `KEY=value` lines; values may be single- or double-quoted;
/// `export ` prefixes and `#` comments are ignored.
pub fn parse_env(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        out.insert(k.trim().to_string(), unquote(v.trim()));
    }
    out
}

fn unquote(v: &str) -> String {
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        return v[1..v.len() - 1].replace("\\\"", "\"");
    }
    if !v.contains('\'') {
        return v.to_string();
    }
    // POSIX single quotes, including the '\'' idiom.
    let mut out = String::new();
    let mut in_q = false;
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => in_q = !in_q,
            '\\' if !in_q => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_env_file() {
        let v =
            parse_env("# c\nKUBECONFIG=/a/b\nexport X='it'\\''s'\nY=\"q\"\nAWS_ALLOW_HTTP=true\n");
        assert_eq!(v["KUBECONFIG"], "/a/b");
        assert_eq!(v["X"], "it's");
        assert_eq!(v["Y"], "q");
        assert_eq!(v["AWS_ALLOW_HTTP"], "true");
    }
}
