//! Filters: which notifications a subscriber wants, and the glob its
//! patterns are matched with. The fields they look at are read by
//! [`crate::top_level::message_fields`].

use std::borrow::Cow;

use crate::top_level::{message_fields, MessageFields};

/// Which notifications a subscriber wants. An empty list means "no constraint"
/// here (the request parser refuses empty lists; an absent key becomes empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Filter {
    /// Globs on `event_type`.
    pub event_types: Vec<String>,
    /// Priorities, compared ignoring ASCII case.
    pub priorities: Vec<String>,
    /// Globs on `publisher_id`.
    pub publishers: Vec<String>,
}

/// `*` matches any run of characters (the empty run too); everything else
/// matches itself. Linear time: a star only ever resumes from its latest position.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
    let (mut p, mut t) = (0, 0);
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            resume = Some((p + 1, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((after_star, start)) = resume {
            p = after_star;
            t = start + 1;
            resume = Some((after_star, start + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

impl Filter {
    /// True when the filter lets every notification through.
    pub fn is_everything(&self) -> bool {
        self.event_types.is_empty() && self.priorities.is_empty() && self.publishers.is_empty()
    }

    pub fn matches(&self, fields: &MessageFields<'_>) -> bool {
        fn any_glob(patterns: &[String], value: &Option<Cow<'_, str>>) -> bool {
            patterns.is_empty()
                || value
                    .as_deref()
                    .is_some_and(|v| patterns.iter().any(|p| glob_matches(p, v)))
        }
        let priority_ok = self.priorities.is_empty()
            || fields
                .priority
                .as_deref()
                .is_some_and(|v| self.priorities.iter().any(|p| p.eq_ignore_ascii_case(v)));
        priority_ok
            && any_glob(&self.event_types, &fields.event_type)
            && any_glob(&self.publishers, &fields.publisher_id)
    }

    /// Whether a notification line (one JSON object) passes the filter.
    pub fn matches_line(&self, line: &[u8]) -> bool {
        self.is_everything() || self.matches(&message_fields(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_matches("*", ""));
        assert!(glob_matches("compute.*", "compute.instance.create.end"));
        assert!(glob_matches("*.end", "compute.instance.create.end"));
        assert!(glob_matches("c*e*d", "compute.instance.create.end"));
        assert!(!glob_matches("compute.*", "image.update"));
        assert!(!glob_matches("compute", "compute.x"));
        assert!(glob_matches("a*a*a*b", "aaaaaaaaaaaaaaaaab"));
        assert!(!glob_matches("a*a*a*b", "aaaaaaaaaaaaaaaaaa"));
        assert!(glob_matches("**", "x"));
        assert!(!glob_matches("Image.*", "image.update"));
    }

    #[test]
    fn filter_semantics() {
        let filter = Filter {
            event_types: vec!["compute.*".into()],
            priorities: vec!["ERROR".into(), "critical".into()],
            publishers: vec![],
        };
        assert!(filter.matches_line(br#"{"event_type":"compute.x","priority":"error"}"#));
        assert!(filter.matches_line(br#"{"event_type":"compute.x","priority":"CRITICAL"}"#));
        assert!(!filter.matches_line(br#"{"event_type":"compute.x","priority":"INFO"}"#));
        assert!(
            !filter.matches_line(br#"{"event_type":"compute.x"}"#),
            "a missing priority does not match"
        );
        assert!(!filter.matches_line(br#"{"priority":"ERROR"}"#));
        assert!(Filter::default().matches_line(b"{}"));
    }
}
