//! The catastrophic-forgetting check: what did fine-tuning cost the model on material it was
//! not trained on? Perplexity on a general English text set (base vs tuned) and the mean
//! per-token KL(base ‖ tuned) of next-token distributions on general prompts, each against a
//! threshold, plus those prompts answered by both models. The default set ships in
//! `assets/general/` (see its README for source and licence); users can pass their own.

use burn::tensor::activation::log_softmax;
use serde::Serialize;

use crate::data::{ChatTemplate, Message, TokenizedExample};
use crate::error::{Error, Result};
use crate::generate::{SamplingOptions, generate};
use crate::model::Llama;
use crate::train::eval_loss;
use crate::train::loss::DEFAULT_LOGITS_CHUNK_BYTES;
use crate::weights::Tokenizer;

/// The default general text set (JSONL, `{"text"}` lines).
pub const GENERAL_TEXT: &str = include_str!("../../assets/general/literature.jsonl");
/// The default general prompts (JSONL, chat lines without an answer).
pub const GENERAL_PROMPTS: &str = include_str!("../../assets/general/prompts.jsonl");

/// Pass/fail thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct Thresholds {
    /// Largest allowed relative perplexity increase on the general text (0.05 = +5 %).
    pub max_ppl_increase: f64,
    /// Largest allowed mean per-token KL(base ‖ tuned) on the general prompts, nats.
    pub max_kl: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_ppl_increase: 0.05,
            max_kl: 0.05,
        }
    }
}

/// What the check found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub base_ppl: f64,
    pub tuned_ppl: f64,
    /// (tuned − base) / base.
    pub ppl_change: f64,
    pub mean_kl: f64,
    pub passed: bool,
    /// One line: `general ability: ppl +1.3 %, KL 0.012 — OK`.
    pub verdict: String,
    /// (prompt, base answer, tuned answer).
    pub answers: Vec<(String, String, String)>,
}

/// The general prompts of a JSONL text (`{"messages": [...]}` lines, last turn a user's).
pub fn parse_prompts(text: &str) -> Result<Vec<Vec<Message>>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let v: serde_json::Value = serde_json::from_str(l)
                .map_err(|e| Error::Template(format!("general prompt {}: {e}", i + 1)))?;
            serde_json::from_value(v["messages"].clone())
                .map_err(|e| Error::Template(format!("general prompt {}: {e}", i + 1)))
        })
        .collect()
}

/// Mean over every position of `seqs` of KL(p_base ‖ p_tuned) of the next-token distributions.
pub fn mean_kl(base: &Llama, tuned: &Llama, seqs: &[Vec<u32>]) -> Result<f64> {
    let (mut sum, mut n) = (0.0, 0usize);
    for ids in seqs.iter().filter(|s| !s.is_empty()) {
        let t = ids.len();
        let lb = log_softmax(
            base.forward(base.ids_tensor(ids, 1, t), None)
                .reshape([t, base.config.vocab_size]),
            1,
        );
        let lt = log_softmax(
            tuned
                .forward(tuned.ids_tensor(ids, 1, t), None)
                .inner()
                .reshape([t, tuned.config.vocab_size]),
            1,
        );
        let kl = (lb.clone().exp() * (lb - lt)).sum(); // [1], summed over positions and vocab
        let v: Vec<f32> = kl
            .into_data()
            .try_into_vec()
            .map_err(|e| Error::Device(format!("{e:?}")))?;
        sum += v[0] as f64;
        n += t;
    }
    Ok(sum / n.max(1) as f64)
}

/// Runs the check: `text` is the tokenized general text set, `prompts` the general prompts.
#[allow(clippy::too_many_arguments)] // the two models, their tokenizer and template, the two sets, the limits
pub fn check(
    base: &Llama,
    tuned: &Llama,
    tok: &Tokenizer,
    template: &ChatTemplate,
    text: &[TokenizedExample],
    prompts: &[Vec<Message>],
    answer_tokens: usize,
    th: Thresholds,
) -> Result<Report> {
    let pad = tok.pad_or_eos();
    let base_ppl = eval_loss(base, text, 4, DEFAULT_LOGITS_CHUNK_BYTES, pad)?.exp();
    let tuned_ppl = eval_loss(tuned, text, 4, DEFAULT_LOGITS_CHUNK_BYTES, pad)?.exp();
    let seqs = prompts
        .iter()
        .map(|p| tok.encode(&template.render(p, true)?))
        .collect::<Result<Vec<_>>>()?;
    let kl = mean_kl(base, tuned, &seqs)?;
    let mut answers = Vec::new();
    if answer_tokens > 0 {
        let o = SamplingOptions {
            max_tokens: answer_tokens,
            ..Default::default()
        };
        for (p, ids) in prompts.iter().zip(&seqs) {
            let q = p.last().map_or(String::new(), |m| m.content.clone());
            answers.push((
                q,
                generate(base, tok, ids, &o, |_| {})?.text,
                generate(tuned, tok, ids, &o, |_| {})?.text,
            ));
        }
    }
    let ppl_change = (tuned_ppl - base_ppl) / base_ppl;
    let passed = ppl_change <= th.max_ppl_increase && kl <= th.max_kl;
    let verdict = format!(
        "general ability: ppl {:+.1} %, KL {kl:.3} — {}",
        100.0 * ppl_change,
        if passed {
            "OK".to_string()
        } else {
            format!(
                "WARNING: above the limits (ppl +{:.0} %, KL {}); lower --lr or --steps, or mix general data in",
                100.0 * th.max_ppl_increase,
                th.max_kl
            )
        }
    );
    Ok(Report {
        base_ppl,
        tuned_ppl,
        ppl_change,
        mean_kl: kl,
        passed,
        verdict,
        answers,
    })
}
