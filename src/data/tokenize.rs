//! Example -> token ids + loss mask. The mask is derived by rendering conversation prefixes
//! with the model's own chat template, so any template works without `{% generation %}`
//! markers: for assistant turn i, the text between `render(msgs[..i], add_generation_prompt)`
//! and `render(msgs[..=i])` is that turn; its tokens carry loss up to and including the first
//! end-of-turn token, and the template's separator after it (ChatML's `\n`) does not — the
//! convention of ../shared/reference/README.md.

use super::jsonl::{Example, Problem, Sourced};
use super::template::{ChatTemplate, Message};
use crate::weights::Tokenizer;

/// Token ids and, per token, whether the model is trained to predict it.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizedExample {
    pub ids: Vec<u32>,
    /// `labels[i]`: token i is a target (predicted from position i - 1).
    pub labels: Vec<bool>,
    pub file: String,
    pub line: usize,
}

impl TokenizedExample {
    /// Number of target tokens.
    pub fn n_labels(&self) -> usize {
        self.labels.iter().skip(1).filter(|&&l| l).count()
    }
}

/// How to tokenize.
#[derive(Debug, Clone, Copy)]
pub struct TokenizeOptions {
    /// Longer examples are refused (no silent truncation).
    pub max_seq_len: usize,
    /// Loss on every token, prompt included.
    pub train_on_prompt: bool,
}

/// Byte ranges of the assistant turns in the full rendering of `msgs`.
fn assistant_spans(
    msgs: &[Message],
    t: &ChatTemplate,
) -> Result<(String, Vec<(usize, usize)>), String> {
    let full = t.render(msgs, false).map_err(|e| e.to_string())?;
    let mut spans = Vec::new();
    for (i, m) in msgs
        .iter()
        .enumerate()
        .filter(|(_, m)| m.role == "assistant")
    {
        let before = t.render(&msgs[..i], true).map_err(|e| e.to_string())?;
        let through = t.render(&msgs[..=i], false).map_err(|e| e.to_string())?;
        if !full.starts_with(&before) || !full.starts_with(&through) || through.len() < before.len()
        {
            return Err(format!(
                "the chat template does not render message {i} ({}) as a prefix of the conversation; \
                 cannot find the assistant tokens (use --train-on-prompt)",
                m.role
            ));
        }
        spans.push((before.len(), through.len()));
    }
    Ok((full, spans))
}

/// Labels tokens starting inside a span, stopping after the first end-of-turn id per span.
fn label_spans(
    ids: &[u32],
    offsets: &[(usize, usize)],
    spans: &[(usize, usize)],
    stop: &[u32],
) -> Vec<bool> {
    let mut labels = vec![false; ids.len()];
    for &(s, e) in spans {
        for (i, &(start, _)) in offsets.iter().enumerate() {
            if start >= s && start < e {
                labels[i] = true;
                if stop.contains(&ids[i]) {
                    break;
                }
            }
        }
    }
    labels
}

/// Tokenizes one example.
pub fn tokenize(
    ex: &Sourced,
    tok: &Tokenizer,
    t: &ChatTemplate,
    o: TokenizeOptions,
) -> Result<TokenizedExample, Problem> {
    let problem = |reason: String| Problem {
        file: ex.file.clone(),
        line: ex.line,
        reason,
    };
    let eos = tok.eos_token.clone().unwrap_or_default();
    let (text, spans) = match &ex.example {
        Example::Chat(msgs) => assistant_spans(msgs, t).map_err(problem)?,
        Example::PromptCompletion { prompt, completion } => {
            let text = format!("{prompt}{completion}{eos}");
            let n = text.len();
            (text, vec![(prompt.len(), n)])
        }
        Example::Text(body) => {
            let text = format!("{body}{eos}");
            let n = text.len();
            (text, vec![(0, n)])
        }
    };
    let (ids, offsets) = tok
        .encode_with_offsets(&text)
        .map_err(|e| problem(e.to_string()))?;
    if ids.len() > o.max_seq_len {
        return Err(problem(format!(
            "{} tokens, longer than --max-seq-len {} (raise it, shorten the example, or --skip-invalid)",
            ids.len(),
            o.max_seq_len
        )));
    }
    let labels = if o.train_on_prompt {
        vec![true; ids.len()]
    } else {
        label_spans(&ids, &offsets, &spans, &tok.stop_ids)
    };
    let ex = TokenizedExample {
        ids,
        labels,
        file: ex.file.clone(),
        line: ex.line,
    };
    if ex.n_labels() == 0 {
        return Err(problem("no tokens to learn from after tokenization".into()));
    }
    Ok(ex)
}
