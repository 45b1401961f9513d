//! The forgetting check flags a deliberately over-trained adapter (huge learning rate on
//! unrelated text) and passes an untouched one (B = 0), on a tiny in-memory model.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anytune::data::load::load_text;
use anytune::data::{ChatTemplate, TokenizeOptions};
use anytune::eval::forgetting::{GENERAL_PROMPTS, GENERAL_TEXT, Thresholds, check, parse_prompts};
use anytune::model::Llama;
use anytune::train::{Reporter, StepStats, TrainConfig, train};
use burn::tensor::Device;
use common::tiny::tiny_source;

struct Quiet;
impl Reporter for Quiet {
    fn step(&mut self, _: &StepStats) {}
    fn eval(&mut self, _: usize, _: f64) {}
    fn note(&mut self, _: &str) {}
}

#[test]
fn flags_an_overtrained_adapter_and_passes_an_untouched_one() {
    let src = tiny_source(11);
    let t = ChatTemplate::new(src.chat_template.as_deref(), &src.tokenizer).unwrap();
    let o = TokenizeOptions {
        max_seq_len: 1024,
        train_on_prompt: false,
    };
    let general = load_text(GENERAL_TEXT, "literature.jsonl", &src.tokenizer, &t, o);
    assert!(general.problems.is_empty() && general.examples.len() == 64);
    let prompts = parse_prompts(GENERAL_PROMPTS).unwrap();
    assert_eq!(prompts.len(), 8);
    let base = Llama::load(&src, &Device::flex()).unwrap();
    let general = &general.examples[..16];

    let cfg = TrainConfig {
        lora_rank: 4,
        ..TrainConfig::default()
    };
    let mut untouched = base.clone();
    untouched.attach_lora(&cfg.lora().unwrap());
    untouched.freeze_adapters();
    let run = |tuned: &Llama, answer_tokens: usize| {
        check(
            &base,
            tuned,
            &src.tokenizer,
            &t,
            general,
            &prompts,
            answer_tokens,
            Thresholds::default(),
        )
        .unwrap()
    };
    let r = run(&untouched, 0);
    eprintln!("untouched: {}", r.verdict);
    assert!(
        r.passed && r.mean_kl.abs() < 1e-6 && r.ppl_change.abs() < 1e-6,
        "{r:?}"
    );
    assert!(r.verdict.ends_with("— OK"));

    let junk = (0..8)
        .map(|i| format!("{{\"text\": \"zzzz qqqq {i} zzzz qqqq zzzz\"}}"))
        .collect::<Vec<_>>()
        .join("\n");
    let junk = load_text(&junk, "junk.jsonl", &src.tokenizer, &t, o).examples;
    let mut over = base.clone();
    let hot = TrainConfig {
        steps: Some(30),
        lr: 0.05,
        lora_rank: 4,
        eval_every: 0,
        ..TrainConfig::default()
    };
    over.attach_lora(&hot.lora().unwrap());
    train(
        &mut over,
        &hot,
        &junk,
        &[],
        2,
        None,
        Arc::new(AtomicBool::new(false)),
        &mut Quiet,
    )
    .unwrap();
    over.freeze_adapters();
    let r = run(&over, 4);
    eprintln!("over-trained: {}", r.verdict);
    assert!(!r.passed, "{r:?}");
    assert!(r.verdict.contains("WARNING"));
    assert!(r.mean_kl > 0.05 || r.ppl_change > 0.05);
    assert_eq!(r.answers.len(), 8);
}
