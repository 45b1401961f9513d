//! Generation-based task evaluation: each hold-out example's prompt (everything before its last
//! assistant turn) is answered greedily, by the base model and by the tuned one, and scored
//! against the example's own answer (`metrics`), optionally also against a JSON Schema.

use serde::Serialize;

use super::metrics::TaskMetrics;
#[cfg(not(target_arch = "wasm32"))]
use super::metrics::{AnswerScore, aggregate, is_json_object, score};
#[cfg(not(target_arch = "wasm32"))]
use crate::data::ChatTemplate;
use crate::data::{Example, Message};
use crate::error::{Error, Result};
#[cfg(not(target_arch = "wasm32"))]
use crate::generate::{SamplingOptions, generate};
#[cfg(not(target_arch = "wasm32"))]
use crate::model::Llama;
#[cfg(not(target_arch = "wasm32"))]
use crate::weights::Tokenizer;

/// A prompt and the answer the data expects.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub prompt: Vec<Message>,
    pub expected: String,
}

/// The cases of chat examples (other formats have no prompt/answer split by role).
pub fn cases(examples: &[Example]) -> Vec<Case> {
    examples
        .iter()
        .filter_map(|e| match e {
            Example::Chat(m) => {
                let last = m.iter().rposition(|x| x.role == "assistant")?;
                Some(Case {
                    prompt: m[..last].to_vec(),
                    expected: m[last].content.clone(),
                })
            }
            _ => None,
        })
        .collect()
}

/// One model's answers and their scores.
#[derive(Debug, Clone, Serialize)]
pub struct Answers {
    pub texts: Vec<String>,
    pub metrics: TaskMetrics,
    /// Share of answers valid under the schema, when one was given.
    pub schema_valid: Option<f64>,
}

/// A compiled JSON Schema.
pub struct Schema(jsonschema::Validator);

impl Schema {
    /// Compiles schema JSON text (`name` for errors).
    pub fn new(text: &str, name: &str) -> Result<Schema> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::Checkpoint {
            path: name.into(),
            reason: format!("invalid JSON: {e}"),
        })?;
        jsonschema::validator_for(&v)
            .map(Schema)
            .map_err(|e| Error::Checkpoint {
                path: name.into(),
                reason: format!("invalid JSON Schema: {e}"),
            })
    }

    /// Whether `answer` parses as JSON and satisfies the schema.
    pub fn accepts(&self, answer: &str) -> bool {
        serde_json::from_str::<serde_json::Value>(answer.trim()).is_ok_and(|v| self.0.is_valid(&v))
    }
}

/// Answers every case greedily with `model` and scores the answers.
#[cfg(not(target_arch = "wasm32"))]
pub fn answer_all(
    model: &Llama,
    tok: &Tokenizer,
    template: &ChatTemplate,
    cases: &[Case],
    max_tokens: usize,
    schema: Option<&Schema>,
    mut progress: impl FnMut(usize),
) -> Result<Answers> {
    let o = SamplingOptions {
        max_tokens,
        ..Default::default()
    };
    let mut texts = Vec::with_capacity(cases.len());
    for (i, c) in cases.iter().enumerate() {
        let ids = tok.encode(&template.render(&c.prompt, true)?)?;
        texts.push(generate(model, tok, &ids, &o, |_| {})?.text);
        progress(i + 1);
    }
    let scores: Vec<(AnswerScore, bool)> = texts
        .iter()
        .zip(cases)
        .map(|(t, c)| (score(t, &c.expected), is_json_object(&c.expected)))
        .collect();
    let schema_valid = schema
        .map(|s| texts.iter().filter(|t| s.accepts(t)).count() as f64 / texts.len().max(1) as f64);
    Ok(Answers {
        metrics: aggregate(&scores),
        texts,
        schema_valid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_checks_types_and_required_keys() {
        let s = Schema::new(
            r#"{"type":"object","required":["package_name","depends_count"],
                "properties":{"package_name":{"type":"string"},"depends_count":{"type":"integer","minimum":0}},
                "additionalProperties":false}"#,
            "s.json",
        )
        .unwrap();
        assert!(s.accepts(r#"{"package_name": "zlib1g", "depends_count": 1}"#));
        assert!(!s.accepts(r#"{"package_name": "zlib1g", "depends_count": -1}"#));
        assert!(!s.accepts(r#"{"package_name": "zlib1g"}"#));
        assert!(!s.accepts(r#"{"package_name": "zlib1g", "depends_count": 1, "x": 2}"#));
        assert!(!s.accepts("not json"));
        assert!(Schema::new("{", "bad.json").is_err());
    }

    #[test]
    fn cases_split_prompt_and_last_answer() {
        let ex = Example::Chat(vec![
            Message::new("user", "q1"),
            Message::new("assistant", "a1"),
            Message::new("user", "q2"),
            Message::new("assistant", "a2"),
        ]);
        let c = cases(&[ex, Example::Text("t".into())]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].prompt.len(), 3);
        assert_eq!(c[0].expected, "a2");
    }
}
