//! Channel ACL: which channels an identity may subscribe to.
//!
//! Patterns (from the JWT `channels` claim or an API key's `channels`):
//! - `issues`: exactly that channel;
//! - `predictions:*`: every channel starting with `predictions:` (only a TRAILING `*` in the
//!   pattern as written is a wildcard; `*` alone allows every channel);
//! - `gateway:{sub}`: `{name}` is replaced by the identity's string claim `name` when the
//!   identity is built. Substituted text is always literal: a `sub` of `*` yields the exact
//!   channel `gateway:*`, never a wildcard. A pattern naming a missing or non-string claim is
//!   dropped (it allows nothing).
//!
//! Invariant: matching is O(patterns × channel length), no allocation.

use std::sync::Arc;

/// One compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(Box<str>),
    Prefix(Box<str>),
}

/// The channels an identity may use. Cheap to clone (one `Arc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelAcl(Arc<AclInner>);

#[derive(Debug, PartialEq, Eq)]
enum AclInner {
    All,
    Patterns(Vec<Pattern>),
}

impl ChannelAcl {
    /// The same ACL value (one `Arc`).
    pub fn ptr_eq(&self, other: &ChannelAcl) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Every channel allowed (anonymous mode, or a `*` pattern).
    pub fn all() -> Self {
        ChannelAcl(Arc::new(AclInner::All))
    }

    /// Nothing allowed.
    pub fn none() -> Self {
        ChannelAcl(Arc::new(AclInner::Patterns(Vec::new())))
    }

    /// Compiles `patterns`, substituting `{name}` through `lookup` (literal text, see module doc).
    pub fn compile<'p>(
        patterns: impl IntoIterator<Item = &'p str>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let mut out = Vec::new();
        for p in patterns {
            let (body, wildcard) = match p.strip_suffix('*') {
                Some(b) => (b, true),
                None => (p, false),
            };
            let Some(body) = substitute(body, &lookup) else {
                continue;
            };
            if wildcard && body.is_empty() {
                return ChannelAcl::all();
            }
            out.push(if wildcard {
                Pattern::Prefix(body.into())
            } else {
                Pattern::Exact(body.into())
            });
        }
        ChannelAcl(Arc::new(AclInner::Patterns(out)))
    }

    /// True when `channel` matches one pattern.
    pub fn allows(&self, channel: &str) -> bool {
        match &*self.0 {
            AclInner::All => true,
            AclInner::Patterns(ps) => ps.iter().any(|p| match p {
                Pattern::Exact(e) => **e == *channel,
                Pattern::Prefix(pre) => channel.starts_with(&**pre),
            }),
        }
    }

    /// True when every channel is allowed.
    pub fn is_all(&self) -> bool {
        matches!(*self.0, AclInner::All)
    }
}

/// Replaces every `{name}` with `lookup(name)`; `None` when a name is unknown, its value is
/// empty (so `gateway:{sub}*` can never widen to `gateway:*`) or a brace is unbalanced.
fn substitute(body: &str, lookup: &impl Fn(&str) -> Option<String>) -> Option<String> {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}')?;
        let value = lookup(&after[..close]).filter(|v| !v.is_empty())?;
        out.push_str(&value);
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return None;
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(ps: &[&str]) -> ChannelAcl {
        ChannelAcl::compile(ps.iter().copied(), |k| {
            (k == "sub").then(|| "gw-1".to_string())
        })
    }

    #[test]
    fn exact_prefix_and_placeholder() {
        let a = acl(&["issues", "predictions:*", "gateway:{sub}", "x:{nope}"]);
        assert!(a.allows("issues"));
        assert!(!a.allows("issues2"));
        assert!(a.allows("predictions:BTC"));
        assert!(!a.allows("predictions"));
        assert!(a.allows("gateway:gw-1"));
        assert!(!a.allows("gateway:gw-2"));
        assert!(!a.allows("x:"));
        assert!(acl(&["*"]).is_all());
        assert!(!acl(&[]).allows("issues"));
    }

    #[test]
    fn substituted_text_is_literal() {
        let a = ChannelAcl::compile(["gateway:{sub}"], |_| Some("*".into()));
        assert!(a.allows("gateway:*"));
        assert!(!a.allows("gateway:other"));
        let b = ChannelAcl::compile(["gateway:{sub"], |_| Some("x".into()));
        assert!(!b.allows("gateway:{sub"));
    }
}
