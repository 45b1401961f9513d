//! The training loop, readable in one screen: for each step, micro-batches -> loss ->
//! backward -> clip -> AdamW -> report; hold-out evaluation and checkpoints on schedule.
//! Reporting (progress bars, logs, plots) receives step stats through `Reporter`; it never
//! holds the model. Deterministic given the seed: data order comes from (seed, epoch), dropout
//! from (seed, step), so a resumed run continues exactly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use super::loss::{batch_loss, loss_and_grads_recomputed};
use super::optim::{AdamW, AdamWConfig, clip};
use super::schedule::lr_at;
use crate::data::{Batch, TokenizedExample, collate, epoch_batches};
use crate::error::{Error, Result};
use crate::export::peft::{AdapterTensors, adapter_tensors_async};
use crate::model::Llama;
use crate::model::lora::LoraAdapter;

/// Where the loop is; everything a checkpoint needs besides tensors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Optimizer steps done.
    pub step: usize,
    pub epoch: u64,
    /// Next micro-batch index within the epoch's order.
    pub batch_in_epoch: usize,
    pub best_eval_loss: Option<f64>,
    pub last_eval_loss: Option<f64>,
    pub best_step: usize,
    pub evals_without_improvement: usize,
    pub tokens_seen: usize,
}

/// One optimizer step's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct StepStats {
    pub step: usize,
    pub total_steps: usize,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    /// Non-padding tokens in the step.
    pub tokens: usize,
    pub label_tokens: usize,
    pub seconds: f64,
    pub skipped: bool,
}

/// Receives what the loop does.
pub trait Reporter {
    fn step(&mut self, s: &StepStats);
    fn eval(&mut self, step: usize, loss: f64);
    fn note(&mut self, msg: &str);
    /// Called every `save_every` steps with the full state to persist.
    fn checkpoint(&mut self, _state: &Checkpoint) -> Result<()> {
        Ok(())
    }
}

/// Everything needed to continue a run exactly.
pub struct Checkpoint {
    pub progress: Progress,
    pub adapter: AdapterTensors,
    /// (m, v) host copies in adapter order (A then B per module).
    pub moments: Vec<(Vec<f32>, Vec<f32>)>,
    pub optimizer_step: u64,
    pub best_adapter: Option<AdapterTensors>,
}

/// What a run ends with.
pub struct Outcome {
    pub progress: Progress,
    pub final_eval_loss: Option<f64>,
    /// Host copy of the adapter with the best hold-out loss, when evaluated.
    pub best_adapter: Option<AdapterTensors>,
    pub stopped_early: bool,
}

/// Hold-out loss: token-level mean over every labelled token of `examples`.
pub async fn eval_loss_async(
    model: &Llama,
    examples: &[TokenizedExample],
    batch_size: usize,
    chunk_bytes: usize,
    pad_id: u32,
) -> Result<f64> {
    let (mut sum, mut n) = (0.0, 0usize);
    for chunk in examples.chunks(batch_size.max(1)) {
        let refs: Vec<&TokenizedExample> = chunk.iter().collect();
        let batch = collate(&refs, pad_id);
        let loss = read_scalar(batch_loss(model, &batch, chunk_bytes).inner()).await?;
        sum += loss * batch.targets.len() as f64;
        n += batch.targets.len();
    }
    Ok(sum / n.max(1) as f64)
}

/// `eval_loss_async`, blocking (native).
#[cfg(not(target_arch = "wasm32"))]
pub fn eval_loss(
    model: &Llama,
    examples: &[TokenizedExample],
    batch_size: usize,
    chunk_bytes: usize,
    pad_id: u32,
) -> Result<f64> {
    crate::util::block_on(eval_loss_async(
        model,
        examples,
        batch_size,
        chunk_bytes,
        pad_id,
    ))
}

async fn read_scalar(t: Tensor<1>) -> Result<f64> {
    let v = crate::util::read_f32(t).await?;
    Ok(v.first().copied().unwrap_or(f32::NAN) as f64)
}

fn params(model: &Llama) -> Vec<Tensor<2>> {
    model
        .adapters()
        .iter()
        .flat_map(|(_, a)| [a.a.clone(), a.b.clone()])
        .collect()
}

pub(crate) fn set_params(model: &mut Llama, new: Vec<Tensor<2>>) {
    let mut it = new.into_iter();
    for (_, lin) in model.linears_mut() {
        if let Some(a) = lin.lora.as_mut() {
            let (na, nb) = (it.next(), it.next());
            if let (Some(na), Some(nb)) = (na, nb) {
                *a = LoraAdapter {
                    a: na.detach().autodiff().require_grad(),
                    b: nb.detach().autodiff().require_grad(),
                    ..a.clone()
                };
            }
        }
    }
}

/// Hold-out loss now; reports it and keeps the adapter when it is the best so far. Returns
/// whether it improved.
async fn evaluate(
    model: &Llama,
    cfg: &TrainConfig,
    eval_set: &[TokenizedExample],
    pad_id: u32,
    p: &mut Progress,
    best: &mut Option<AdapterTensors>,
    rep: &mut dyn Reporter,
) -> Result<bool> {
    // On a frozen view: no dropout, and no autodiff graph built for batches that are never
    // backpropagated (tracked adapters made every hold-out pass keep its graph: 10 GB peaks).
    let mut frozen = model.clone();
    frozen.set_training(false);
    frozen.freeze_adapters();
    let l = eval_loss_async(
        &frozen,
        eval_set,
        cfg.batch_size,
        cfg.logits_chunk_bytes,
        pad_id,
    )
    .await?;
    rep.eval(p.step, l);
    p.last_eval_loss = Some(l);
    if p.best_eval_loss.is_some_and(|b| l >= b) {
        return Ok(false);
    }
    (p.best_eval_loss, p.best_step, p.evals_without_improvement) = (Some(l), p.step, 0);
    *best = Some(adapter_tensors_async(model).await?);
    Ok(true)
}

/// `train_async`, blocking (native).
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::too_many_arguments)]
pub fn train(
    model: &mut Llama,
    cfg: &TrainConfig,
    train_set: &[TokenizedExample],
    eval_set: &[TokenizedExample],
    pad_id: u32,
    resume: Option<Checkpoint>,
    stop: Arc<AtomicBool>,
    rep: &mut dyn Reporter,
) -> Result<Outcome> {
    crate::util::block_on(train_async(
        model, cfg, train_set, eval_set, pad_id, resume, stop, rep,
    ))
}

/// Trains `model`'s adapters. `resume` continues a checkpoint; `stop` ends the run after the
/// current step (the browser's Stop button, Ctrl-C). Device readbacks are awaited, so the
/// browser's thread is never blocked; natively `train` drives it.
#[allow(clippy::too_many_arguments)]
pub async fn train_async(
    model: &mut Llama,
    cfg: &TrainConfig,
    train_set: &[TokenizedExample],
    eval_set: &[TokenizedExample],
    pad_id: u32,
    resume: Option<Checkpoint>,
    stop: Arc<AtomicBool>,
    rep: &mut dyn Reporter,
) -> Result<Outcome> {
    let total = cfg.total_steps(train_set.len());
    let lengths: Vec<usize> = train_set.iter().map(|e| e.ids.len()).collect();
    let acfg = AdamWConfig {
        beta1: cfg.beta1,
        beta2: cfg.beta2,
        eps: cfg.eps,
        weight_decay: cfg.weight_decay,
    };
    let mut opt = AdamW::new(acfg, &params(model));
    let (mut p, mut best) = (Progress::default(), None);
    if let Some(ck) = resume {
        crate::export::peft::restore(model, &ck.adapter)?;
        opt.step = ck.optimizer_step;
        opt.restore_moments(&ck.moments)?;
        (p, best) = (ck.progress, ck.best_adapter);
        rep.note(&format!("resumed at step {}", p.step));
    }
    model.set_training(true);
    let mut order = epoch_batches(&lengths, cfg.batch_size, cfg.shuffle, cfg.seed, p.epoch);
    let mut bad_in_a_row = 0;
    let mut stopped_early = false;
    while p.step < total && !stop.load(Ordering::Relaxed) {
        let t0 = web_time::Instant::now();
        let lr = lr_at(cfg.schedule, cfg.lr, p.step, cfg.warmup_steps, total);
        model
            .device
            .seed(cfg.seed.wrapping_add(p.step as u64 * 7919));
        let (mut grads, mut loss_sum, mut tokens, mut labels, mut finite) =
            (None::<Vec<Tensor<2>>>, 0.0, 0, 0, true);
        for _ in 0..cfg.grad_accum.max(1) {
            if p.batch_in_epoch >= order.len() {
                p.epoch += 1;
                p.batch_in_epoch = 0;
                order = epoch_batches(&lengths, cfg.batch_size, cfg.shuffle, cfg.seed, p.epoch);
            }
            let refs: Vec<&TokenizedExample> = order[p.batch_in_epoch]
                .iter()
                .map(|&i| &train_set[i])
                .collect();
            p.batch_in_epoch += 1;
            let batch: Batch = collate(&refs, pad_id);
            let accum = cfg.grad_accum.max(1) as f64;
            let (value, step_grads) = if cfg.recompute {
                let seed = (cfg.lora_dropout > 0.0).then(|| {
                    cfg.seed
                        .wrapping_add(p.step as u64 * 7919 + p.batch_in_epoch as u64)
                });
                let (loss, g) =
                    loss_and_grads_recomputed(model, &batch, cfg.logits_chunk_bytes, seed);
                let g: Vec<Tensor<2>> = g
                    .into_iter()
                    .flat_map(|(a, b)| [a.div_scalar(accum), b.div_scalar(accum)])
                    .collect();
                (read_scalar(loss).await? / accum, g)
            } else {
                let loss = batch_loss(model, &batch, cfg.logits_chunk_bytes).div_scalar(accum);
                let value = read_scalar(loss.clone().inner()).await?;
                let g = loss.backward();
                let grads = params(model)
                    .iter()
                    .map(|t| t.grad(&g).unwrap_or_else(|| t.clone().inner().zeros_like()))
                    .collect();
                (value, grads)
            };
            finite &= value.is_finite();
            grads = Some(match grads {
                None => step_grads,
                Some(acc) => acc
                    .into_iter()
                    .zip(step_grads)
                    .map(|(a, b)| a + b)
                    .collect(),
            });
            loss_sum += value;
            tokens += batch.n_tokens();
            labels += batch.targets.len();
        }
        let (grads, norm) = clip(grads.unwrap_or_default(), cfg.max_grad_norm).await;
        let skipped = !finite || !norm.is_finite();
        if skipped {
            bad_in_a_row += 1;
            rep.note(&format!(
                "step {}: non-finite loss or gradient; step skipped",
                p.step + 1
            ));
            if bad_in_a_row >= 3 {
                return Err(Error::Generate(format!(
                    "3 steps in a row had a non-finite loss (last at step {}); lower --lr or check the data",
                    p.step + 1
                )));
            }
        } else {
            bad_in_a_row = 0;
            let new = opt.update(&params(model), grads, lr);
            set_params(model, new);
        }
        p.step += 1;
        p.tokens_seen += tokens;
        rep.step(&StepStats {
            step: p.step,
            total_steps: total,
            loss: loss_sum,
            lr,
            grad_norm: norm,
            tokens,
            label_tokens: labels,
            seconds: t0.elapsed().as_secs_f64(),
            skipped,
        });
        if cfg.eval_every > 0
            && p.step % cfg.eval_every == 0
            && p.step < total
            && !eval_set.is_empty()
        {
            model.set_training(false);
            let improved = evaluate(model, cfg, eval_set, pad_id, &mut p, &mut best, rep).await?;
            model.set_training(true);
            if !improved {
                p.evals_without_improvement += 1;
                if cfg.patience > 0 && p.evals_without_improvement >= cfg.patience {
                    rep.note(&format!(
                        "early stop: no hold-out improvement in {} evaluations",
                        cfg.patience
                    ));
                    stopped_early = true;
                    break;
                }
            }
        }
        if cfg.save_every > 0 && p.step % cfg.save_every == 0 {
            rep.checkpoint(&Checkpoint {
                progress: p.clone(),
                adapter: adapter_tensors_async(model).await?,
                moments: opt.moments_host().await?,
                optimizer_step: opt.step,
                best_adapter: best.clone(),
            })?;
        }
    }
    model.set_training(false);
    let final_eval_loss = if eval_set.is_empty() {
        None
    } else {
        evaluate(model, cfg, eval_set, pad_id, &mut p, &mut best, rep).await?;
        p.last_eval_loss
    };
    Ok(Outcome {
        progress: p,
        final_eval_loss,
        best_adapter: best,
        stopped_early,
    })
}
