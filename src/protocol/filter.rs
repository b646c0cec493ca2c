//! Subscription filters: `{"severity":["high","critical"],"/meta/component":"api"}`.
//! AND across keys, OR within a list; a key is a top-level field name or a JSON pointer.
//! Matching allocates nothing.

use serde_json::Value;

use super::cursor::quoted;

/// A compiled filter. Empty = matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// (JSON pointer, accepted values)
    clauses: Vec<(String, Vec<Value>)>,
}

/// Most clauses one filter may hold (bounds per-delivery work).
pub const MAX_CLAUSES: usize = 16;
/// Most accepted values one clause may list.
pub const MAX_VALUES: usize = 64;

impl Filter {
    /// Compiles a filter object. Errors say which key is wrong.
    pub fn parse(v: &Value) -> Result<Filter, String> {
        let obj = v.as_object().ok_or("filter must be an object")?;
        if obj.len() > MAX_CLAUSES {
            return Err(format!("filter has more than {MAX_CLAUSES} keys"));
        }
        let mut clauses = Vec::with_capacity(obj.len());
        for (k, want) in obj {
            if k.is_empty() {
                return Err("filter keys must not be empty".into());
            }
            let ptr = if k.starts_with('/') {
                k.clone()
            } else {
                format!("/{}", k.replace('~', "~0").replace('/', "~1"))
            };
            let values = match want {
                Value::Array(a) if a.is_empty() => {
                    return Err(format!("filter {}: empty list", quoted(k)));
                }
                Value::Array(a) if a.len() > MAX_VALUES => {
                    return Err(format!(
                        "filter {}: more than {MAX_VALUES} values",
                        quoted(k)
                    ));
                }
                Value::Array(a) => a.clone(),
                Value::Object(_) => {
                    return Err(format!(
                        "filter {}: value must be a scalar or a list",
                        quoted(k)
                    ));
                }
                other => vec![other.clone()],
            };
            clauses.push((ptr, values));
        }
        Ok(Filter { clauses })
    }

    /// AND of both filters.
    pub fn and(mut self, other: &Filter) -> Filter {
        self.clauses.extend(other.clauses.iter().cloned());
        self
    }

    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }

    /// Whether event `data` passes.
    #[inline]
    pub fn matches(&self, data: &Value) -> bool {
        self.clauses
            .iter()
            .all(|(ptr, values)| match data.pointer(ptr) {
                Some(got) => values.iter().any(|w| w == got),
                None => false,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn and_across_keys_or_within_lists_and_pointers() {
        let f = Filter::parse(&json!({"severity":["high","critical"],"/meta/component":"api"}))
            .unwrap();
        assert!(f.matches(&json!({"severity":"high","meta":{"component":"api"}})));
        assert!(f.matches(&json!({"severity":"critical","meta":{"component":"api"}})));
        assert!(!f.matches(&json!({"severity":"low","meta":{"component":"api"}})));
        assert!(!f.matches(&json!({"severity":"high","meta":{"component":"db"}})));
        assert!(!f.matches(&json!({"severity":"high"})));
    }

    #[test]
    fn numbers_and_booleans_match_by_value() {
        let f = Filter::parse(&json!({"n":[1,2],"ok":true})).unwrap();
        assert!(f.matches(&json!({"n":2,"ok":true})));
        assert!(!f.matches(&json!({"n":"2","ok":true})));
    }

    #[test]
    fn bad_filters_are_explained() {
        assert!(Filter::parse(&json!([1])).is_err());
        assert!(
            Filter::parse(&json!({"a":[]}))
                .unwrap_err()
                .contains("\"a\"")
        );
        assert!(Filter::parse(&json!({"a":{"b":1}})).is_err());
        let many: Vec<i32> = (0..=MAX_VALUES as i32).collect();
        let e = Filter::parse(&json!({ "a": many })).unwrap_err();
        assert!(e.contains("more than 64 values"), "{e}");
    }

    #[test]
    fn forced_filter_is_anded() {
        let user = Filter::parse(&json!({"severity":"high"})).unwrap();
        let forced = Filter::parse(&json!({"tenant":"acme"})).unwrap();
        let f = user.and(&forced);
        assert!(f.matches(&json!({"severity":"high","tenant":"acme"})));
        assert!(!f.matches(&json!({"severity":"high","tenant":"evil"})));
    }
}
