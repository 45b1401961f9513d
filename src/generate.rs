//! Text generation with a KV cache: greedy, or temperature + top-k + top-p sampling from a
//! seeded RNG; stops on the model's EOS / end-of-turn ids or after `max_tokens`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::model::{KvCache, Llama};
use crate::weights::Tokenizer;

/// How to pick the next token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingOptions {
    /// New tokens at most.
    pub max_tokens: usize,
    /// 0 = greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p (1 = all).
    pub top_p: f32,
    pub seed: u64,
    /// Keep going through stop tokens until `max_tokens` (benchmarks).
    pub ignore_stop: bool,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        SamplingOptions {
            max_tokens: 256,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
            ignore_stop: false,
        }
    }
}

/// What a generation produced.
#[derive(Debug, Clone)]
pub struct Generation {
    /// New token ids, including the stop token when one ended it.
    pub ids: Vec<u32>,
    /// Decoded text of `ids` without the stop token.
    pub text: String,
    /// True when a stop token ended the generation (not `max_tokens`).
    pub stopped: bool,
    pub prompt_tokens: usize,
    /// Wall seconds spent producing the new tokens (prompt processing included).
    pub seconds: f64,
}

impl Generation {
    /// New tokens per second.
    pub fn tokens_per_second(&self) -> f64 {
        self.ids.len() as f64 / self.seconds.max(1e-9)
    }
}

/// Picks a token id from logits.
pub fn sample(logits: &[f32], o: &SamplingOptions, rng: &mut StdRng) -> u32 {
    if o.temperature <= 0.0 {
        // First maximum, like torch.argmax.
        let mut best = 0;
        for (i, &v) in logits.iter().enumerate() {
            if v > logits[best] {
                best = i;
            }
        }
        return best as u32;
    }
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_unstable_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if o.top_k > 0 {
        idx.truncate(o.top_k);
    }
    let max = logits[idx[0]];
    let mut probs: Vec<f64> = idx
        .iter()
        .map(|&i| (((logits[i] - max) / o.temperature) as f64).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if o.top_p < 1.0 {
        let mut acc = 0.0;
        let keep = probs.iter().position(|p| {
            acc += p;
            acc >= o.top_p as f64
        });
        let keep = keep.map_or(probs.len(), |k| k + 1);
        probs.truncate(keep);
        idx.truncate(keep);
    }
    let total: f64 = probs.iter().sum();
    let mut r = rng.random::<f64>() * total;
    for (p, &i) in probs.iter().zip(&idx) {
        r -= p;
        if r <= 0.0 {
            return i as u32;
        }
    }
    idx[idx.len() - 1] as u32
}

/// `generate_async`, blocking (native).
#[cfg(not(target_arch = "wasm32"))]
pub fn generate(
    model: &Llama,
    tok: &Tokenizer,
    prompt: &[u32],
    o: &SamplingOptions,
    on_text: impl FnMut(&str),
) -> Result<Generation> {
    crate::util::block_on(generate_async(model, tok, prompt, o, on_text))
}

/// Continues `prompt` (token ids); `on_text` receives each newly decoded piece of text. Each
/// token's logits are awaited, so the browser's thread is never blocked.
pub async fn generate_async(
    model: &Llama,
    tok: &Tokenizer,
    prompt: &[u32],
    o: &SamplingOptions,
    mut on_text: impl FnMut(&str),
) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(Error::Generate("empty prompt".into()));
    }
    let ctx = model.config.max_position_embeddings;
    if prompt.len() >= ctx {
        return Err(Error::Generate(format!(
            "prompt is {} tokens; the model's context is {ctx}",
            prompt.len()
        )));
    }
    let start = web_time::Instant::now();
    let mut rng = StdRng::seed_from_u64(o.seed);
    let mut cache = KvCache::default();
    let mut ids: Vec<u32> = Vec::new();
    let mut printed = String::new();
    let mut next_input = prompt.to_vec();
    let mut stopped = false;
    while ids.len() < o.max_tokens && prompt.len() + ids.len() < ctx {
        let logits = model.step(&next_input, &mut cache);
        let logits = crate::util::read_f32(logits)
            .await
            .map_err(|e| Error::Generate(format!("reading logits: {e}")))?;
        let id = sample(&logits, o, &mut rng);
        ids.push(id);
        if !o.ignore_stop && tok.stop_ids.contains(&id) {
            stopped = true;
            break;
        }
        let text = tok.decode(&ids)?;
        // Hold back an incomplete UTF-8 sequence (decoded as U+FFFD) until it completes.
        if !text.ends_with('\u{FFFD}') && text.len() > printed.len() && text.starts_with(&printed) {
            on_text(&text[printed.len()..]);
            printed = text;
        }
        next_input = vec![id];
    }
    let body = if stopped {
        &ids[..ids.len() - 1]
    } else {
        &ids[..]
    };
    let text = tok.decode(body)?;
    if text.len() > printed.len() && text.starts_with(&printed) {
        on_text(&text[printed.len()..]);
    }
    Ok(Generation {
        ids,
        text,
        stopped,
        prompt_tokens: prompt.len(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_first_maximum() {
        let mut rng = StdRng::seed_from_u64(0);
        let o = SamplingOptions::default();
        assert_eq!(sample(&[0.1, 3.0, 3.0, -1.0], &o, &mut rng), 1);
    }

    #[test]
    fn top_k_one_is_greedy_and_seed_repeats() {
        let logits = [0.5, 2.0, 1.9, 0.0];
        let o = SamplingOptions {
            temperature: 1.0,
            top_k: 1,
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(7);
        assert_eq!(sample(&logits, &o, &mut rng), 1);
        let o = SamplingOptions {
            temperature: 1.0,
            top_p: 0.9,
            seed: 3,
            ..Default::default()
        };
        let draw = |seed| {
            let mut r = StdRng::seed_from_u64(seed);
            (0..20)
                .map(|_| sample(&logits, &o, &mut r))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        // top-p 0.9 drops token 3 (probability ~0.07): it never appears.
        assert!(draw(5).iter().all(|&i| i != 3));
    }
}
