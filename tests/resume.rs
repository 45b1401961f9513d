//! Resume is exact: N steps straight and N/2 steps + stop + checkpoint round trip + resume
//! give the same adapter within 1e-6 (tiny model; shuffle, dropout, grad accumulation, cosine
//! warm-up and clipping all on, so every piece of saved state matters).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anytune::data::jsonl::{Example, Sourced};
use anytune::data::{ChatTemplate, Message, TokenizeOptions, TokenizedExample, tokenize};
use anytune::export::peft::{AdapterTensors, adapter_tensors};
use anytune::model::Llama;
use anytune::train::checkpoint::{from_files, to_files};
use anytune::train::schedule::Schedule;
use anytune::train::{Checkpoint, Reporter, StepStats, TrainConfig, train};
use burn::tensor::Device;
use common::tiny::tiny_source;

struct Rec {
    stop_after: Option<usize>,
    stop: Arc<AtomicBool>,
    saved: Option<Vec<(&'static str, Vec<u8>)>>,
    cfg: TrainConfig,
    losses: Vec<f64>,
}

impl Reporter for Rec {
    fn step(&mut self, s: &StepStats) {
        self.losses.push(s.loss);
        if self.stop_after == Some(s.step) {
            self.stop.store(true, Ordering::Relaxed);
        }
    }
    fn eval(&mut self, _: usize, _: f64) {}
    fn note(&mut self, _: &str) {}
    fn checkpoint(&mut self, ck: &Checkpoint) -> anytune::Result<()> {
        self.saved = Some(to_files(ck, &self.cfg)?);
        Ok(())
    }
}

fn data(src: &anytune::weights::ModelSource) -> Vec<TokenizedExample> {
    let t = ChatTemplate::new(src.chat_template.as_deref(), &src.tokenizer).unwrap();
    (0..10)
        .map(|i| {
            let ex = Sourced {
                file: "mem".into(),
                line: i + 1,
                example: Example::Chat(vec![
                    Message::new("user", &format!("item {i}: {}", "x".repeat(i))),
                    Message::new("assistant", &format!("{{\"n\": {i}}}")),
                ]),
            };
            tokenize(
                &ex,
                &src.tokenizer,
                &t,
                TokenizeOptions {
                    max_seq_len: 128,
                    train_on_prompt: false,
                },
            )
            .unwrap()
        })
        .collect()
}

fn cfg() -> TrainConfig {
    TrainConfig {
        steps: Some(6),
        batch_size: 3,
        grad_accum: 2,
        lr: 5e-3,
        schedule: Schedule::Cosine,
        warmup_steps: 2,
        max_grad_norm: 0.5,
        weight_decay: 0.01,
        lora_rank: 4,
        lora_alpha: 8.0,
        lora_dropout: 0.1,
        eval_every: 0,
        save_every: 3,
        ..TrainConfig::default()
    }
}

fn run(resume: Option<Checkpoint>, stop_after: Option<usize>) -> (AdapterTensors, Rec) {
    let src = tiny_source(7);
    let train_set = data(&src);
    let mut model = Llama::load(&src, &Device::flex()).unwrap();
    model.attach_lora(&cfg().lora().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let mut rec = Rec {
        stop_after,
        stop: stop.clone(),
        saved: None,
        cfg: cfg(),
        losses: vec![],
    };
    train(
        &mut model,
        &cfg(),
        &train_set,
        &[],
        2,
        resume,
        stop,
        &mut rec,
    )
    .unwrap();
    (adapter_tensors(&model).unwrap(), rec)
}

#[test]
fn stop_and_resume_equals_straight_run() {
    let (straight, rec_straight) = run(None, None);
    let (_, rec_half) = run(None, Some(3));
    assert_eq!(rec_half.losses.len(), 3, "stopped after 3 steps");
    let files = rec_half.saved.expect("checkpoint at step 3");
    let (ck, saved_cfg) = from_files("mem", |name| {
        Ok(files.iter().find(|f| f.0 == name).map(|f| f.1.clone()))
    })
    .unwrap();
    assert_eq!(saved_cfg, cfg());
    assert_eq!(ck.progress.step, 3);
    let (resumed, rec_rest) = run(Some(ck), None);
    assert_eq!(
        rec_rest.losses.len(),
        3,
        "resumed for the remaining 3 steps"
    );
    for (i, (a, b)) in rec_straight.losses[3..]
        .iter()
        .zip(&rec_rest.losses)
        .enumerate()
    {
        assert!(
            (a - b).abs() < 1e-6,
            "step {}: loss {a} vs resumed {b}",
            i + 4
        );
    }
    let mut worst = 0f32;
    for (k, (shape, v)) in &straight {
        let (s2, v2) = &resumed[k];
        assert_eq!(shape, s2);
        for (x, y) in v.iter().zip(v2) {
            worst = worst.max((x - y).abs());
        }
    }
    eprintln!("max |straight - resumed| over every adapter value: {worst:.2e}");
    assert!(worst <= 1e-6, "adapters differ by {worst}");
    // And training did something.
    assert!(straight.values().any(|(_, v)| v.iter().any(|x| *x != 0.0)));
}
