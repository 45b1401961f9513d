//! Training data from JSONL, one example per line, in one of three formats detected per file
//! from its first example: chat (`{"messages":[{"role","content"},...]}`, OpenAI style),
//! prompt/completion (`{"prompt","completion"}`) and plain text (`{"text"}`). Every bad line
//! becomes a `file:line: reason` problem; nothing is dropped silently. A UTF-8 BOM and CRLF
//! line ends are accepted.

use serde_json::Value as Json;

use super::template::Message;

/// The three accepted formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Chat,
    PromptCompletion,
    Text,
}

impl Format {
    fn describe(self) -> &'static str {
        match self {
            Format::Chat => r#"chat ({"messages": [...]})"#,
            Format::PromptCompletion => r#"prompt/completion ({"prompt": ..., "completion": ...})"#,
            Format::Text => r#"text ({"text": ...})"#,
        }
    }
}

/// One training example.
#[derive(Debug, Clone, PartialEq)]
pub enum Example {
    /// A conversation; loss on the assistant turns.
    Chat(Vec<Message>),
    /// Raw prompt then completion; loss on the completion.
    PromptCompletion { prompt: String, completion: String },
    /// Raw text; loss on all of it.
    Text(String),
}

/// An example with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Sourced {
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    pub example: Example,
}

/// A problem with one line (or the whole file when `line` is 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.reason)
        }
    }
}

/// What a file held: the good examples and the problems.
#[derive(Debug, Default)]
pub struct Parsed {
    pub format: Option<Format>,
    pub examples: Vec<Sourced>,
    pub problems: Vec<Problem>,
}

const ROLES: &[&str] = &["system", "user", "assistant"];

fn detect(obj: &serde_json::Map<String, Json>) -> Option<Format> {
    if obj.contains_key("messages") {
        Some(Format::Chat)
    } else if obj.contains_key("prompt") || obj.contains_key("completion") {
        Some(Format::PromptCompletion)
    } else if obj.contains_key("text") {
        Some(Format::Text)
    } else {
        None
    }
}

fn string_field(obj: &serde_json::Map<String, Json>, key: &str) -> Result<String, String> {
    match obj.get(key) {
        None => Err(format!("missing \"{key}\"")),
        Some(Json::String(s)) if s.trim().is_empty() => Err(format!("\"{key}\" is empty")),
        Some(Json::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("\"{key}\" must be a string, found {}", kind(other))),
    }
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn chat(obj: &serde_json::Map<String, Json>, require_answer: bool) -> Result<Example, String> {
    let msgs = match obj.get("messages") {
        Some(Json::Array(a)) if a.is_empty() => return Err("\"messages\" is empty".into()),
        Some(Json::Array(a)) => a,
        Some(other) => {
            return Err(format!(
                "\"messages\" must be an array, found {}",
                kind(other)
            ));
        }
        None => return Err("missing \"messages\"".into()),
    };
    let mut out = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let Json::Object(m) = m else {
            return Err(format!("message {i} must be an object, found {}", kind(m)));
        };
        let role = string_field(m, "role").map_err(|e| format!("message {i}: {e}"))?;
        if !ROLES.contains(&role.as_str()) {
            return Err(format!(
                "message {i}: unknown role \"{role}\" (expected system, user or assistant)"
            ));
        }
        let content =
            string_field(m, "content").map_err(|e| format!("message {i} ({role}): {e}"))?;
        out.push(Message { role, content });
    }
    if require_answer && !out.iter().any(|m| m.role == "assistant") {
        return Err("no assistant turn (nothing to learn from)".into());
    }
    Ok(Example::Chat(out))
}

fn example(
    format: Format,
    obj: &serde_json::Map<String, Json>,
    require_answer: bool,
) -> Result<Example, String> {
    match format {
        Format::Chat => chat(obj, require_answer),
        Format::PromptCompletion => Ok(Example::PromptCompletion {
            prompt: string_field(obj, "prompt")?,
            completion: string_field(obj, "completion")?,
        }),
        Format::Text => Ok(Example::Text(string_field(obj, "text")?)),
    }
}

/// Parses the JSONL `text` of `file` (training data: every chat needs an assistant turn).
pub fn parse(text: &str, file: &str) -> Parsed {
    parse_with(text, file, true)
}

/// Parses prompts: like `parse`, but chat lines may end without an assistant turn.
pub fn parse_prompts(text: &str, file: &str) -> Parsed {
    parse_with(text, file, false)
}

fn parse_with(text: &str, file: &str, require_answer: bool) -> Parsed {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut p = Parsed::default();
    let mut first_line = 0;
    let problem = |line: usize, reason: String| Problem {
        file: file.into(),
        line,
        reason,
    };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let obj = match serde_json::from_str::<Json>(line) {
            Ok(Json::Object(o)) => o,
            Ok(other) => {
                p.problems.push(problem(
                    n,
                    format!("expected a JSON object, found {}", kind(&other)),
                ));
                continue;
            }
            Err(e) => {
                p.problems.push(problem(n, format!("invalid JSON: {e}")));
                continue;
            }
        };
        let format = match (p.format, detect(&obj)) {
            (Some(f), Some(d)) if f != d => {
                p.problems.push(problem(
                    n,
                    format!(
                        "{} example in a {} file (format set by line {first_line})",
                        d.describe(),
                        f.describe()
                    ),
                ));
                continue;
            }
            (Some(f), _) => f,
            (None, Some(d)) => {
                p.format = Some(d);
                first_line = n;
                d
            }
            (None, None) => {
                p.problems.push(problem(
                    n,
                    "no \"messages\", \"prompt\"/\"completion\" or \"text\" key".into(),
                ));
                continue;
            }
        };
        match example(format, &obj, require_answer) {
            Ok(example) => p.examples.push(Sourced {
                file: file.into(),
                line: n,
                example,
            }),
            Err(reason) => p.problems.push(problem(n, reason)),
        }
    }
    if p.examples.is_empty() && p.problems.is_empty() {
        p.problems
            .push(problem(0, "no examples (the file is empty)".into()));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats_and_reads_bom_crlf() {
        let t = "\u{FEFF}{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}\r\n\r\n";
        let p = parse(t, "a.jsonl");
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert_eq!(p.format, Some(Format::Chat));
        assert_eq!(p.examples[0].line, 1);
        let p = parse(
            "{\"prompt\":\"a\",\"completion\":\"b\"}\n{\"text\":\"c\"}\n",
            "b.jsonl",
        );
        assert_eq!(p.format, Some(Format::PromptCompletion));
        assert_eq!(
            p.problems[0]
                .to_string()
                .split(':')
                .take(2)
                .collect::<Vec<_>>(),
            ["b.jsonl", "2"]
        );
    }

    #[test]
    fn reports_each_bad_line() {
        let t = [
            r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}"#,
            r#"{"messages":[{"role":"robot","content":"q"}]}"#,
            r#"{"messages":[{"role":"user","content":"q"}]}"#,
            r#"{"messages":[{"role":"user","content":5},{"role":"assistant","content":"a"}]}"#,
            r#"{"messages":[{"role":"user"},{"role":"assistant","content":"a"}]}"#,
            r#"{"messages": "#,
            r#"[1,2]"#,
        ]
        .join("\n");
        let p = parse(&t, "d.jsonl");
        assert_eq!(p.examples.len(), 1);
        let msgs: Vec<String> = p.problems.iter().map(|x| x.to_string()).collect();
        assert!(
            msgs[0].starts_with("d.jsonl:2: message 0: unknown role \"robot\""),
            "{msgs:?}"
        );
        assert!(
            msgs[1].starts_with("d.jsonl:3: no assistant turn"),
            "{msgs:?}"
        );
        assert!(
            msgs[2].contains(
                "d.jsonl:4: message 0 (user): \"content\" must be a string, found a number"
            )
        );
        assert!(msgs[3].contains("d.jsonl:5: message 0 (user): missing \"content\""));
        assert!(msgs[4].starts_with("d.jsonl:6: invalid JSON"));
        assert!(msgs[5].starts_with("d.jsonl:7: expected a JSON object, found an array"));
        assert_eq!(
            parse("", "e.jsonl").problems[0].to_string(),
            "e.jsonl: no examples (the file is empty)"
        );
    }
}
