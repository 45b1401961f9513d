//! Every training option and its default, in one typed tree shared by the CLI (flags and a
//! TOML file) and the browser (JSON). The defaults are the reference run's settings
//! (../shared/reference/README.md), which also make the demo learn.

use serde::{Deserialize, Serialize};

use super::schedule::Schedule;
use crate::model::lora::{LoraConfig, TARGETS};

/// Training options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimizer steps (overrides `epochs` when set).
    pub steps: Option<usize>,
    /// Passes over the training set, when `steps` is not set.
    pub epochs: f64,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Longest example in tokens; longer ones are refused (no truncation).
    pub max_seq_len: usize,
    pub lr: f64,
    pub schedule: Schedule,
    pub warmup_steps: usize,
    /// Global gradient-norm clip (0 = off).
    pub max_grad_norm: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub seed: u64,
    /// Shuffle (seeded, length-bucketed); false keeps file order.
    pub shuffle: bool,
    pub lora_rank: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    /// Comma-separated subset of q,k,v,o,gate,up,down.
    pub lora_targets: String,
    pub rslora: bool,
    /// Loss on every token, not only the assistant's.
    pub train_on_prompt: bool,
    /// Train on the valid examples and report the rest, instead of refusing to start.
    pub skip_invalid: bool,
    /// Share of the training file held out when no eval file is given (0 = none).
    pub eval_split: f64,
    /// Hold-out evaluation every N steps (0 = only before and after).
    pub eval_every: usize,
    /// Stop after this many evaluations without improvement (0 = never).
    pub patience: usize,
    /// Checkpoint every N steps (0 = never).
    pub save_every: usize,
    /// Largest chunk of output-head logits, bytes (device binding limits).
    pub logits_chunk_bytes: usize,
    /// Recompute each block's activations in the backward instead of keeping them (one extra
    /// forward per step; activation memory drops to the block inputs plus one block).
    pub recompute: bool,
    /// Run the forgetting check (general text perplexity and KL vs the base) after training.
    pub forgetting_check: bool,
    /// Forgetting check: largest allowed relative perplexity increase on general text.
    pub max_ppl_increase: f64,
    /// Forgetting check: largest allowed mean per-token KL(base ‖ tuned) on general prompts.
    pub max_kl: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: Some(30),
            epochs: 1.0,
            batch_size: 4,
            grad_accum: 1,
            max_seq_len: 512,
            lr: 2e-4,
            schedule: Schedule::Constant,
            warmup_steps: 0,
            max_grad_norm: 0.0,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            seed: 42,
            shuffle: true,
            lora_rank: 8,
            lora_alpha: 16.0,
            lora_dropout: 0.0,
            lora_targets: "q,k,v,o,gate,up,down".into(),
            rslora: false,
            train_on_prompt: false,
            skip_invalid: false,
            eval_split: 0.0,
            eval_every: 10,
            patience: 0,
            save_every: 0,
            logits_chunk_bytes: super::loss::DEFAULT_LOGITS_CHUNK_BYTES,
            recompute: false,
            forgetting_check: true,
            max_ppl_increase: 0.05,
            max_kl: 0.05,
        }
    }
}

impl TrainConfig {
    /// The LoRA part, with target short names expanded to module names.
    pub fn lora(&self) -> Result<LoraConfig, String> {
        let mut targets = Vec::new();
        for t in self
            .lora_targets
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            let name = if t.ends_with("_proj") {
                t.to_string()
            } else {
                format!("{t}_proj")
            };
            if !TARGETS.contains(&name.as_str()) {
                return Err(format!(
                    "unknown LoRA target `{t}` (q, k, v, o, gate, up, down)"
                ));
            }
            targets.push(name);
        }
        if targets.is_empty() {
            return Err("no LoRA targets".into());
        }
        if self.lora_rank == 0 {
            return Err("LoRA rank must be at least 1".into());
        }
        Ok(LoraConfig {
            rank: self.lora_rank,
            alpha: self.lora_alpha,
            dropout: self.lora_dropout,
            rslora: self.rslora,
            targets,
            seed: self.seed,
        })
    }

    /// Total optimizer steps for a training set of `n` examples.
    pub fn total_steps(&self, n: usize) -> usize {
        self.steps.unwrap_or_else(|| {
            let per_epoch = n
                .div_ceil(self.batch_size.max(1))
                .div_ceil(self.grad_accum.max(1));
            ((per_epoch as f64) * self.epochs).ceil().max(1.0) as usize
        })
    }
}
