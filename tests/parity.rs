//! Parity with the PyTorch + PEFT reference (../shared/reference/peft): same first batch, same
//! mask, LoRA initialised from `adapter_init/`; the loss before any update must equal
//! 0.48016489 within 1e-3 relative and every step-0 gradient must match
//! `grads_step0.safetensors` (lora_B within 1e-3 relative norm error, lora_A exactly zero) —
//! on the CPU backend and on wgpu; then 2 training steps on that batch lower its loss.

mod common;

use anytune::data::{ChatTemplate, TokenizeOptions, collate, jsonl, tokenize};
use anytune::export::peft;
use anytune::model::{BaseWeights, Llama, LoadOptions};
use anytune::train::loss::{DEFAULT_LOGITS_CHUNK_BYTES, batch_loss};
use anytune::train::{Reporter, TrainConfig, train};
use anytune::weights::ModelSource;
use burn::tensor::Device;
use common::*;
use safetensors::SafeTensors;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

const REF_LOSS: f64 = 0.48016488552093506;

fn first_batch(src: &ModelSource) -> (anytune::data::Batch, Vec<anytune::data::TokenizedExample>) {
    let path = reference_dir().join("data/train.jsonl");
    let parsed = jsonl::parse(&std::fs::read_to_string(&path).unwrap(), "train.jsonl");
    assert!(parsed.problems.is_empty());
    let t = ChatTemplate::new(src.chat_template.as_deref(), &src.tokenizer).unwrap();
    let o = TokenizeOptions {
        max_seq_len: 256,
        train_on_prompt: false,
    };
    let toks: Vec<_> = parsed.examples[..4]
        .iter()
        .map(|e| tokenize(e, &src.tokenizer, &t, o).unwrap())
        .collect();
    let refs: Vec<_> = toks.iter().collect();
    let per: Vec<usize> = toks.iter().map(|e| e.n_labels()).collect();
    assert_eq!(per, vec![68, 60, 61, 72], "label tokens per example");
    let batch = collate(&refs, src.tokenizer.pad_id.unwrap());
    let g: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(reference_dir().join("peft/results.json")).unwrap(),
    )
    .unwrap();
    let fb = &g["golden"]["first_batch"];
    assert_eq!([batch.b, batch.t], [4, 255]);
    assert_eq!(batch.n_tokens(), 944);
    assert_eq!(batch.targets.len(), 261);
    let row0 = ids(&fb["input_ids_row0"]);
    assert_eq!(&batch.ids[..row0.len()], &row0[..], "row 0 ids");
    let labels: Vec<i64> = fb["labels_row0"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    let ours: Vec<i64> = (0..labels.len())
        .map(|i| {
            if toks[0].labels.get(i) == Some(&true) {
                toks[0].ids[i] as i64
            } else {
                -100
            }
        })
        .collect();
    assert_eq!(ours, labels, "row 0 labels");
    (batch, toks)
}

fn check(device: &Device, opts: LoadOptions, label: &str, then_train: bool) {
    let t0 = std::time::Instant::now();
    let src = ModelSource::open(&model_path()).unwrap();
    let (batch, toks) = first_batch(&src);
    let mut model = Llama::load_with(&src, device, &opts).unwrap();
    eprintln!(
        "{label}: base weights {:?}, {:.1} MiB on the device",
        opts.base,
        model.base_bytes() as f64 / (1 << 20) as f64
    );
    peft::load_dir(&mut model, &reference_dir().join("peft/adapter_init")).unwrap();
    assert_eq!(model.adapters().len(), 210);
    let loss = batch_loss(&model, &batch, DEFAULT_LOGITS_CHUNK_BYTES);
    let value = loss
        .clone()
        .inner()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap()[0] as f64;
    let rel = (value - REF_LOSS).abs() / REF_LOSS;
    eprintln!("{label}: first-batch loss {value:.8} (reference {REF_LOSS:.8}, rel err {rel:.2e})");
    // Our f32 dequantized model matches PEFT to ~2e-5 relative; a kept quantized base must
    // give the same loss within 1e-4.
    assert!(rel < 1e-4, "{label}: loss {value} vs {REF_LOSS}");
    let grads = loss.backward();
    let bytes = std::fs::read(reference_dir().join("peft/grads_step0.safetensors")).unwrap();
    let reference = SafeTensors::deserialize(&bytes).unwrap();
    let mut worst = 0f64;
    let mut errs = Vec::new();
    for (module, a) in model.adapters() {
        for (which, t) in [("lora_A", &a.a), ("lora_B", &a.b)] {
            let key = format!("base_model.model.{module}.{which}.default.weight");
            let r = reference.tensor(&key).unwrap();
            let r: Vec<f32> = r
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            let g: Vec<f32> = t
                .grad(&grads)
                .expect("adapter gradient")
                .into_data()
                .try_into_vec()
                .unwrap();
            if which == "lora_A" {
                assert!(
                    g.iter().all(|&x| x == 0.0),
                    "{label}: {key} not exactly zero"
                );
                continue;
            }
            let diff: f64 = g
                .iter()
                .zip(&r)
                .map(|(x, y)| ((x - y) as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            let norm: f64 = r.iter().map(|y| (*y as f64).powi(2)).sum::<f64>().sqrt();
            let err = diff / norm.max(1e-30);
            worst = worst.max(err);
            errs.push((err, key));
        }
    }
    errs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mean = errs.iter().map(|e| e.0).sum::<f64>() / errs.len() as f64;
    eprintln!(
        "{label}: lora_B gradient relative norm error: worst {worst:.2e} ({}), mean {mean:.2e} over 210 tensors",
        errs[0].1
    );
    for (e, k) in &errs {
        assert!(*e < 1e-3, "{label}: {k}: relative norm error {e:.2e}");
    }
    eprintln!(
        "{label}: loss and gradients in {:.0}s",
        t0.elapsed().as_secs_f64()
    );
    if !then_train {
        return;
    }
    // Then 2 real training steps (the trainer: loss, backward, AdamW) on that batch: its loss
    // must go down.
    let cfg = TrainConfig {
        steps: Some(2),
        shuffle: false,
        eval_every: 0,
        ..TrainConfig::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let out = train(&mut model, &cfg, &toks, &toks, 2, None, stop, &mut Quiet).unwrap();
    let after = out.final_eval_loss.unwrap();
    eprintln!("{label}: loss on the first batch after 2 AdamW steps: {value:.5} -> {after:.5}");
    assert!(
        after < value - 0.01,
        "{label}: loss did not go down: {value} -> {after}"
    );
    eprintln!("{label}: {:.0}s in all", t0.elapsed().as_secs_f64());
}

struct Quiet;

impl Reporter for Quiet {
    fn step(&mut self, _: &anytune::train::StepStats) {}
    fn eval(&mut self, _: usize, _: f64) {}
    fn note(&mut self, _: &str) {}
}

#[test]
fn cpu_first_batch_loss_and_gradients_match_peft() {
    check(
        &Device::flex().autodiff(),
        LoadOptions::default(),
        "cpu",
        true,
    );
}

fn wgpu() -> Option<Device> {
    common::wgpu().map(|d| d.device)
}

/// The full reference batch (4 x 255 tokens, 30 layers) on wgpu with the GPU default, the
/// quantized base kept on the device (our WGSL kernels): minutes on lavapipe (software Vulkan
/// runs these kernels far slower than the CPU backend), so the training steps run only in the
/// short-batch test below.
#[test]
fn wgpu_first_batch_loss_and_gradients_match_peft() {
    let Some(dev) = wgpu() else { return };
    let opts = LoadOptions {
        base: BaseWeights::Keep,
        max_binding: 128 << 20,
    };
    check(&dev, opts, "wgpu keep", false);
}

/// Worst relative norm error between two sets of per-tensor gradients.
fn worst_rel_err(reference: &[Vec<f32>], other: &[Vec<f32>]) -> f64 {
    assert_eq!(reference.len(), other.len());
    reference
        .iter()
        .zip(other)
        .map(|(c, g)| rel_norm_err(c, g))
        .fold(0f64, f64::max)
}

/// Loss and every adapter gradient of the real model on a short batch: wgpu against the CPU
/// backend (which matches PEFT above); the quantized base kept on the device (our WGSL
/// kernels, `--base-weights keep`) against the dequantized f32 base, also with an 8 MiB binding
/// limit forced so the embedding / output head run through chunked buffers; then 2 training
/// steps on wgpu with the kept base lower that batch's loss.
#[test]
fn wgpu_matches_cpu_and_trains_on_a_short_batch() {
    let Some(gpu) = wgpu() else { return };
    let src = ModelSource::open(&model_path()).unwrap();
    let t = ChatTemplate::new(src.chat_template.as_deref(), &src.tokenizer).unwrap();
    let line = r#"{"messages":[{"role":"system","content":"Reply with JSON."},{"role":"user","content":"Package: zlib1g"},{"role":"assistant","content":"{\"package_name\": \"zlib1g\"}"}]}"#;
    let o = TokenizeOptions {
        max_seq_len: 256,
        train_on_prompt: false,
    };
    let toks = anytune::data::load::load_text(line, "short.jsonl", &src.tokenizer, &t, o).examples;
    let batch = collate(&toks.iter().collect::<Vec<_>>(), 2);
    eprintln!(
        "short batch: {} tokens, {} labelled",
        batch.n_tokens(),
        batch.targets.len()
    );
    let run = |device: &Device, opts: LoadOptions| {
        let t0 = std::time::Instant::now();
        let mut m = Llama::load_with(&src, device, &opts).unwrap();
        peft::load_dir(&mut m, &reference_dir().join("peft/adapter_init")).unwrap();
        let loss = batch_loss(&m, &batch, DEFAULT_LOGITS_CHUNK_BYTES);
        let value = loss
            .clone()
            .inner()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap()[0];
        let g = loss.backward();
        let grads: Vec<Vec<f32>> = m
            .adapters()
            .iter()
            .map(|(_, a)| a.b.grad(&g).unwrap().into_data().try_into_vec().unwrap())
            .collect();
        eprintln!(
            "{:?} (binding limit {} MiB): base weights {:.1} MiB on the device, loss {value:.6}, {:.1}s",
            opts.base,
            opts.max_binding >> 20,
            m.base_bytes() as f64 / (1 << 20) as f64,
            t0.elapsed().as_secs_f64()
        );
        (m, value, grads)
    };
    let deq = LoadOptions {
        base: BaseWeights::Dequantize,
        ..LoadOptions::default()
    };
    let keep = LoadOptions {
        base: BaseWeights::Keep,
        max_binding: 128 << 20,
    };
    let small = LoadOptions {
        max_binding: 8 << 20,
        ..keep
    };
    let (_, cpu_loss, cpu_grads) = run(&Device::flex(), deq);
    let (_, gpu_loss, gpu_grads) = run(&gpu, deq);
    eprintln!("short batch loss: cpu {cpu_loss:.6}, wgpu {gpu_loss:.6}");
    assert!(((cpu_loss - gpu_loss) / cpu_loss).abs() < 1e-4);
    let worst = worst_rel_err(&cpu_grads, &gpu_grads);
    eprintln!(
        "wgpu vs cpu lora_B gradients: worst relative norm error {worst:.2e} over 210 tensors"
    );
    assert!(worst < 1e-3);

    let (mut model, keep_loss, keep_grads) = run(&gpu, keep);
    let rel = ((keep_loss - gpu_loss) / gpu_loss).abs();
    let worst = worst_rel_err(&gpu_grads, &keep_grads);
    eprintln!(
        "keep vs dequantize (wgpu): loss {keep_loss:.6} vs {gpu_loss:.6} (rel err {rel:.2e}), \
         lora_B gradients worst relative norm error {worst:.2e}"
    );
    assert!(rel < 1e-4, "keep loss {keep_loss} vs dequantize {gpu_loss}");
    assert!(worst < 1e-3, "keep gradients: {worst}");
    assert!(matches!(model.embed, anytune::model::Embedding::Quant(_)));

    let (small_model, small_loss, small_grads) = run(&gpu, small);
    let chunks = match &small_model.embed {
        anytune::model::Embedding::Quant(q) => q.chunks.len(),
        _ => 0,
    };
    let rel = ((small_loss - keep_loss) / keep_loss).abs();
    let worst = worst_rel_err(&keep_grads, &small_grads);
    eprintln!(
        "8 MiB binding limit: embedding/head in {chunks} chunks, loss rel err {rel:.2e} vs one chunk, \
         gradients worst relative norm error {worst:.2e}"
    );
    assert!(chunks >= 4, "the 32 MiB Q8_0 embedding must be split");
    // Chunking reorders the f32 sum of dx = dy · W over the 49k vocabulary: same tolerance as
    // every other gradient comparison here.
    assert!(rel < 1e-4 && worst < 1e-3);

    let cfg = TrainConfig {
        steps: Some(2),
        batch_size: 1,
        shuffle: false,
        eval_every: 0,
        ..TrainConfig::default()
    };
    let out = train(
        &mut model,
        &cfg,
        &toks,
        &toks,
        2,
        None,
        Arc::new(AtomicBool::new(false)),
        &mut Quiet,
    )
    .unwrap();
    let after = out.final_eval_loss.unwrap();
    eprintln!(
        "wgpu, quantized base kept: 2 AdamW steps on the real model: batch loss {keep_loss:.5} -> {after:.5}"
    );
    assert!(
        after < keep_loss as f64 - 0.01,
        "loss did not go down: {keep_loss} -> {after}"
    );
}

/// The adapter PEFT trained (30 steps) applied by our loader gives the reference's hold-out
/// loss after training (0.03852015) within 1e-3 relative.
#[test]
fn cpu_peft_trained_adapter_gives_reference_holdout_loss() {
    let src = ModelSource::open(&model_path()).unwrap();
    let path = reference_dir().join("data/holdout.jsonl");
    let t = ChatTemplate::new(src.chat_template.as_deref(), &src.tokenizer).unwrap();
    let o = TokenizeOptions {
        max_seq_len: 512,
        train_on_prompt: false,
    };
    let loaded = anytune::data::load::load_text(
        &std::fs::read_to_string(&path).unwrap(),
        "holdout.jsonl",
        &src.tokenizer,
        &t,
        o,
    );
    assert!(loaded.problems.is_empty());
    let mut model = Llama::load(&src, &Device::flex()).unwrap();
    let base =
        anytune::train::eval_loss(&model, &loaded.examples, 4, DEFAULT_LOGITS_CHUNK_BYTES, 2)
            .unwrap();
    peft::load_dir(&mut model, &reference_dir().join("peft/adapter")).unwrap();
    model.freeze_adapters();
    let tuned =
        anytune::train::eval_loss(&model, &loaded.examples, 4, DEFAULT_LOGITS_CHUNK_BYTES, 2)
            .unwrap();
    eprintln!(
        "hold-out loss: base {base:.6} (reference 0.477044), PEFT adapter {tuned:.6} (reference 0.038520)"
    );
    assert!((base - 0.47704436578648896).abs() / 0.477 < 1e-3);
    assert!((tuned - 0.03852014884940837).abs() / 0.0385 < 1e-3);
}
