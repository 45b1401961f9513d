//! Task metrics on generated answers against reference answers: exact match and, when the
//! reference is a JSON object, valid-JSON rate, exact-key-set rate and per-field exact match
//! (value and JSON type must both agree, like the reference's `check_answer`).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value as Json;

/// How one answer scored.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AnswerScore {
    pub exact_match: bool,
    /// The answer parses as JSON (only judged when the reference is a JSON object).
    pub valid_json: bool,
    /// Its keys are exactly the reference's.
    pub exact_keys: bool,
    /// Per reference key: present with an equal value of the same JSON type.
    pub fields: BTreeMap<String, bool>,
}

impl AnswerScore {
    /// Every field correct and no extra key.
    pub fn all_fields(&self) -> bool {
        self.exact_keys && self.fields.values().all(|&ok| ok)
    }
}

/// Same value and same JSON type (1 ≠ 1.0 ≠ "1", as Python's `type(a) is type(b)` check).
fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => (x.is_f64() == y.is_f64()) && x == y,
        _ => a == b,
    }
}

/// Scores `answer` against `reference`.
pub fn score(answer: &str, reference: &str) -> AnswerScore {
    let mut s = AnswerScore {
        exact_match: answer.trim() == reference.trim(),
        ..Default::default()
    };
    let Ok(Json::Object(want)) = serde_json::from_str::<Json>(reference.trim()) else {
        return s;
    };
    let got = match serde_json::from_str::<Json>(answer.trim()) {
        Ok(v) => v,
        Err(_) => {
            s.fields = want.keys().map(|k| (k.clone(), false)).collect();
            return s;
        }
    };
    s.valid_json = true;
    let got = got.as_object();
    s.exact_keys =
        got.is_some_and(|g| g.len() == want.len() && want.keys().all(|k| g.contains_key(k)));
    s.fields = want
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                got.and_then(|g| g.get(k)).is_some_and(|x| same(x, v)),
            )
        })
        .collect();
    s
}

/// Rates over a set of answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TaskMetrics {
    pub n: usize,
    pub exact_match: f64,
    /// Among answers whose reference is JSON.
    pub n_json: usize,
    pub valid_json: f64,
    pub exact_keys: f64,
    pub all_fields: f64,
    pub fields: BTreeMap<String, f64>,
}

/// Aggregates `scores` paired with whether their reference was a JSON object.
pub fn aggregate(scores: &[(AnswerScore, bool)]) -> TaskMetrics {
    let n = scores.len();
    let rate = |c: usize, d: usize| if d == 0 { 0.0 } else { c as f64 / d as f64 };
    let json: Vec<&AnswerScore> = scores.iter().filter(|(_, j)| *j).map(|(s, _)| s).collect();
    let mut fields: BTreeMap<String, usize> = BTreeMap::new();
    for s in &json {
        for (k, ok) in &s.fields {
            *fields.entry(k.clone()).or_default() += *ok as usize;
        }
    }
    TaskMetrics {
        n,
        exact_match: rate(scores.iter().filter(|(s, _)| s.exact_match).count(), n),
        n_json: json.len(),
        valid_json: rate(json.iter().filter(|s| s.valid_json).count(), json.len()),
        exact_keys: rate(json.iter().filter(|s| s.exact_keys).count(), json.len()),
        all_fields: rate(json.iter().filter(|s| s.all_fields()).count(), json.len()),
        fields: fields
            .into_iter()
            .map(|(k, c)| (k, rate(c, json.len())))
            .collect(),
    }
}

/// Whether a reference answer is a JSON object (decides which metrics apply).
pub fn is_json_object(reference: &str) -> bool {
    matches!(
        serde_json::from_str::<Json>(reference.trim()),
        Ok(Json::Object(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const REF: &str = r#"{"package_name": "zlib1g", "version": "1:1.2.13", "depends_count": 1}"#;

    #[test]
    fn exact_json_answer() {
        let s = score(
            r#" {"version": "1:1.2.13", "package_name": "zlib1g", "depends_count": 1} "#,
            REF,
        );
        assert!(s.valid_json && s.exact_keys && s.all_fields());
        assert!(
            !s.exact_match,
            "key order differs, so not an exact string match"
        );
        assert!(score(REF, REF).exact_match);
    }

    #[test]
    fn invalid_json_scores_nothing() {
        let s = score(r#"{"package_name": "zlib1g", "#, REF);
        assert!(!s.valid_json && !s.exact_keys);
        assert_eq!(s.fields.values().filter(|&&b| b).count(), 0);
        assert_eq!(s.fields.len(), 3);
    }

    #[test]
    fn extra_key_breaks_exact_keys_not_fields() {
        let s = score(
            r#"{"package_name": "zlib1g", "version": "1:1.2.13", "depends_count": 1, "x": 0}"#,
            REF,
        );
        assert!(s.valid_json && !s.exact_keys && !s.all_fields());
        assert!(s.fields.values().all(|&b| b));
    }

    #[test]
    fn wrong_value_and_wrong_type() {
        let s = score(
            r#"{"package_name": "zlib", "version": "1:1.2.13", "depends_count": "1"}"#,
            REF,
        );
        assert!(!s.fields["package_name"]);
        assert!(s.fields["version"]);
        assert!(
            !s.fields["depends_count"],
            "string \"1\" is not the number 1"
        );
        let s = score(
            r#"{"package_name": "zlib1g", "version": "1:1.2.13", "depends_count": 1.0}"#,
            REF,
        );
        assert!(!s.fields["depends_count"], "1.0 is not the integer 1");
    }

    #[test]
    fn unicode_values_compare_exactly() {
        let r = r#"{"maintainer": "José Müller <jm@example.org>", "name": "東京"}"#;
        assert!(
            score(
                r#"{"name": "東京", "maintainer": "José Müller <jm@example.org>"}"#,
                r
            )
            .all_fields()
        );
        assert!(
            !score(
                r#"{"name": "東京", "maintainer": "Jose Muller <jm@example.org>"}"#,
                r
            )
            .all_fields()
        );
    }

    #[test]
    fn aggregate_rates() {
        let scores = vec![
            (score(REF, REF), true),
            (score("not json", REF), true),
            (score(r#"{"package_name": "zlib1g"}"#, REF), true),
            (score("Paris", "Paris"), false),
        ];
        let m = aggregate(&scores);
        assert_eq!((m.n, m.n_json), (4, 3));
        assert_eq!(m.exact_match, 0.5);
        assert!((m.valid_json - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.exact_keys - 1.0 / 3.0).abs() < 1e-12);
        assert!((m.fields["package_name"] - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.fields["depends_count"] - 1.0 / 3.0).abs() < 1e-12);
        assert!(!is_json_object("[1]") && is_json_object(REF));
    }
}
