//! Throughput of our own training and generation at the reference's settings (batch 4 in file
//! order, LoRA r 8 / alpha 16 on all seven projections, AdamW lr 2e-4; greedy generation of a
//! fixed number of tokens at batch 1), measured the way `../shared/reference/peft/bench_speed.py`
//! measures PyTorch + PEFT so the two can be put side by side. The CLI runs both and prints
//! the ratio; this module measures only our side.

use serde::Serialize;

use crate::data::{ChatTemplate, TokenizedExample, collate};
use crate::error::{Error, Result};
use crate::generate::{SamplingOptions, generate};
use crate::model::Llama;
use crate::model::lora::LoraConfig;
use crate::train::loss::{DEFAULT_LOGITS_CHUNK_BYTES, batch_loss};
use crate::train::optim::{AdamW, AdamWConfig};
use crate::weights::Tokenizer;

/// The reference's first-batch loss (train lines 0-3): the guard the bench checks first.
pub const REFERENCE_FIRST_LOSS: f64 = 0.48016488552093506;

/// Our numbers.
#[derive(Debug, Clone, Serialize)]
pub struct OursBench {
    pub first_step_loss: f64,
    pub train_first_step_tokens_per_s: f64,
    /// Non-padding tokens per second over steps 2.. (the first compiles/allocates).
    pub train_tokens_per_s: f64,
    pub train_label_tokens_per_s: f64,
    pub seconds_per_step: f64,
    pub gen_tokens_per_s: f64,
    pub gen_new_tokens: usize,
    pub base_weight_bytes: usize,
    pub lora_and_optimizer_bytes: usize,
    /// What the device allocator holds after the training steps (reserved pages are kept for
    /// reuse, so this is about the peak); `None` where the backend does not report it.
    pub device_reserved_after_training: Option<u64>,
    /// Tokens per example when the bench was asked to truncate (no reference guard then).
    pub truncated_to: Option<usize>,
    /// `model::memory`'s activation estimate for the largest batch run.
    pub activations_estimate: u64,
}

/// Runs `steps` training steps on `train` (batches of 4 in order) and greedy generation of
/// `gen_tokens` for each prompt in `prompts`; `on_line` receives progress lines.
#[allow(clippy::too_many_arguments)] // each input is a separate knob of the reference's bench
pub fn run(
    model: &mut Llama,
    tok: &Tokenizer,
    template: &ChatTemplate,
    train: &[TokenizedExample],
    prompts: &[Vec<crate::data::Message>],
    steps: usize,
    gen_tokens: usize,
    truncate: Option<usize>,
    mut on_line: impl FnMut(&str),
) -> Result<OursBench> {
    let truncated: Vec<TokenizedExample>;
    let train = match truncate {
        Some(n) => {
            truncated = train
                .iter()
                .map(|e| {
                    // Keep the last n tokens: the answer (the labelled part) is at the end.
                    let mut e = e.clone();
                    let start = e.ids.len().saturating_sub(n);
                    e.ids.drain(..start);
                    e.labels.drain(..start);
                    e
                })
                .collect();
            &truncated[..]
        }
        None => train,
    };
    let lora = LoraConfig::default();
    model.attach_lora(&lora);
    model.set_training(true);
    let params = |m: &Llama| {
        m.adapters()
            .iter()
            .flat_map(|(_, a)| [a.a.clone(), a.b.clone()])
            .collect::<Vec<_>>()
    };
    let mut opt = AdamW::new(AdamWConfig::default(), &params(model));
    let n_batches = (train.len() / 4).max(1);
    let (mut first_loss, mut timed) = (f64::NAN, Vec::new());
    let mut activations_estimate = 0u64;
    for s in 0..steps {
        let k = s % n_batches;
        let refs: Vec<&TokenizedExample> =
            train[4 * k..(4 * k + 4).min(train.len())].iter().collect();
        let batch = collate(&refs, tok.pad_or_eos());
        activations_estimate = activations_estimate.max(crate::model::memory::activation_bytes(
            &model.config,
            &crate::model::memory::StepShape {
                batch: batch.b,
                seq_len: batch.t,
                labelled: batch.targets.len(),
                rank: lora.rank,
                targets: lora.targets.len(),
                dropout: false,
                recompute: false,
                fused: crate::kernels::cpu_ops::available(&model.device),
            },
        ));
        let t = web_time::Instant::now();
        let loss = batch_loss(model, &batch, DEFAULT_LOGITS_CHUNK_BYTES);
        let value = loss
            .clone()
            .inner()
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| Error::Device(format!("{e:?}")))?[0] as f64;
        let g = loss.backward();
        let p = params(model);
        let grads = p
            .iter()
            .map(|t| t.grad(&g).unwrap_or_else(|| t.clone().inner().zeros_like()))
            .collect();
        let new = opt.update(&p, grads, 2e-4);
        crate::train::trainer::set_params(model, new);
        let dt = t.elapsed().as_secs_f64();
        if s == 0 && truncate.is_some() {
            first_loss = value;
        } else if s == 0 {
            first_loss = value;
            let rel = (value - REFERENCE_FIRST_LOSS).abs() / REFERENCE_FIRST_LOSS;
            if rel > 1e-3 {
                return Err(Error::Generate(format!(
                    "first-step loss {value:.6} differs from the reference {REFERENCE_FIRST_LOSS:.6} by {rel:.1e} (> 1e-3): \
                     not reporting speed for a computation that is not the reference's"
                )));
            }
        }
        on_line(&format!(
            "train step {}: {} tokens {dt:.2}s = {:.1} tok/s (loss {value:.5})",
            s + 1,
            batch.n_tokens(),
            batch.n_tokens() as f64 / dt
        ));
        timed.push((batch.n_tokens(), batch.targets.len(), dt));
    }
    let device_reserved_after_training = model.device.memory_pool_usage().map(|u| u.bytes_reserved);
    model.set_training(false);
    model.freeze_adapters();
    let rest = if timed.len() > 1 {
        &timed[1..]
    } else {
        &timed[..]
    };
    let secs: f64 = rest.iter().map(|x| x.2).sum();
    let (mut n_new, mut t_gen) = (0, 0.0);
    let o = SamplingOptions {
        max_tokens: gen_tokens,
        ignore_stop: true,
        ..Default::default()
    };
    for msgs in prompts {
        let ids = tok.encode(&template.render(msgs, true)?)?;
        let g = generate(model, tok, &ids, &o, |_| {})?;
        on_line(&format!(
            "generate: prompt {} tokens, {} new tokens in {:.2}s = {:.1} tok/s",
            ids.len(),
            g.ids.len(),
            g.seconds,
            g.tokens_per_second()
        ));
        n_new += g.ids.len();
        t_gen += g.seconds;
    }
    Ok(OursBench {
        first_step_loss: first_loss,
        train_first_step_tokens_per_s: timed.first().map_or(0.0, |x| x.0 as f64 / x.2),
        train_tokens_per_s: rest.iter().map(|x| x.0).sum::<usize>() as f64 / secs.max(1e-9),
        train_label_tokens_per_s: rest.iter().map(|x| x.1).sum::<usize>() as f64 / secs.max(1e-9),
        seconds_per_step: secs / rest.len().max(1) as f64,
        gen_tokens_per_s: n_new as f64 / t_gen.max(1e-9),
        gen_new_tokens: n_new,
        base_weight_bytes: model.base_bytes(),
        // A, B, their gradients and AdamW's two moments per adapter value.
        lora_and_optimizer_bytes: 4 * model.adapter_bytes(),
        device_reserved_after_training,
        truncated_to: truncate,
        activations_estimate,
    })
}
