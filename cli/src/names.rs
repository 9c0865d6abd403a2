//! Function names as Kubernetes names (RFC 1123 DNS labels), the rule the
//! nurfile's names go through: letters are lowercased, every run of other
//! characters (spaces, emoji, punctuation) becomes one `-`, leading and
//! trailing `-` are dropped, and the result must be 1 to 63 characters:
//! `🐄 cowsay` → `cowsay`, `Hello World!` → `hello-world`.

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NameError {
    #[error("has no letter or digit to make a Kubernetes name of")]
    Empty,
    #[error("becomes {0:?}, longer than the 63 characters of a Kubernetes name")]
    TooLong(String),
}

pub fn dns_label(name: &str) -> Result<String, NameError> {
    let mut out = String::new();
    let mut dash = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        } else {
            dash = true;
        }
    }
    match out.len() {
        0 => Err(NameError::Empty),
        1..=63 => Ok(out),
        _ => Err(NameError::TooLong(out)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_dns_labels() {
        assert_eq!(dns_label("🐄 cowsay").unwrap(), "cowsay");
        assert_eq!(dns_label("hello-world").unwrap(), "hello-world");
        assert_eq!(dns_label("Hello World!").unwrap(), "hello-world");
        assert_eq!(dns_label("a__b--c").unwrap(), "a-b-c");
        assert_eq!(dns_label("-x-").unwrap(), "x");
        assert_eq!(dns_label("🐄"), Err(NameError::Empty));
        assert!(matches!(
            dns_label(&"a".repeat(64)),
            Err(NameError::TooLong(_))
        ));
    }
}
