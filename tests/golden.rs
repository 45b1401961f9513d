//! The real model (SmolLM2-135M-Instruct Q4_1) against golden numbers from Hugging Face
//! transformers (tests/fixtures/golden.json): tokenizer ids on both routes, the chat template
//! byte for byte, top-5 logits at every position and the greedy continuation — on the CPU
//! backend and on wgpu (Vulkan; lavapipe in CI). wgpu checks run in one test so kernels
//! compile once per process.

mod common;

use anytune::data::{ChatTemplate, Message};
use anytune::device::{self, DeviceChoice};
use anytune::generate::{SamplingOptions, generate};
use anytune::model::Llama;
use anytune::weights::{ModelSource, Tokenizer};
use burn::tensor::Device;
use common::*;

fn messages(v: &serde_json::Value) -> Vec<Message> {
    serde_json::from_value(v.clone()).unwrap()
}

fn hf_tokenizer() -> Tokenizer {
    let dir = reference_dir().join("smollm2-135m-hf-meta");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let cfg: serde_json::Value = serde_json::from_str(&read("tokenizer_config.json")).unwrap();
    let gen_cfg: serde_json::Value = serde_json::from_str(&read("generation_config.json")).unwrap();
    Tokenizer::from_hf(&read("tokenizer.json"), Some(&cfg), Some(&gen_cfg)).unwrap()
}

#[test]
fn tokenizer_ids_match_on_both_routes() {
    let g = golden();
    let src = ModelSource::open(&model_path()).unwrap();
    for (route, tok) in [
        ("gguf", &src.tokenizer),
        ("tokenizer.json", &hf_tokenizer()),
    ] {
        for case in g["tokenizer"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            assert_eq!(
                tok.encode(text).unwrap(),
                ids(&case["ids"]),
                "{route}: {text:?}"
            );
        }
        let chat = g["chat_template"]["text"].as_str().unwrap();
        assert_eq!(
            tok.encode(chat).unwrap(),
            ids(&g["chat_template"]["ids"]),
            "{route}: chat"
        );
        assert_eq!(
            (tok.bos_id, tok.eos_id, tok.pad_id),
            (Some(1), Some(2), Some(2)),
            "{route}"
        );
        assert!(tok.stop_ids.contains(&2), "{route}");
    }
}

#[test]
fn chat_template_renders_byte_for_byte() {
    let g = golden();
    let src = ModelSource::open(&model_path()).unwrap();
    let meta = reference_dir().join("smollm2-135m-hf-meta/chat_template.jinja");
    let hf_source = std::fs::read_to_string(meta).unwrap();
    let ct = &g["chat_template"];
    let msgs = messages(&ct["messages"]);
    for source in [src.chat_template.as_deref().unwrap(), hf_source.as_str()] {
        let t = ChatTemplate::new(Some(source), &src.tokenizer).unwrap();
        assert!(!t.is_fallback);
        assert_eq!(
            t.render(&msgs, false).unwrap(),
            ct["text"].as_str().unwrap()
        );
        assert_eq!(
            t.render(&msgs[..2], true).unwrap(),
            ct["text_generation_prompt"].as_str().unwrap()
        );
    }
    let fwd = &g["forward"];
    let t = ChatTemplate::new(src.chat_template.as_deref(), &src.tokenizer).unwrap();
    assert_eq!(
        t.render(&messages(&fwd["messages"]), true).unwrap(),
        fwd["prompt_text"].as_str().unwrap()
    );
}

/// Top-1 id equal at every position; each reference top-5 logit matched within 2e-2 by ours
/// for the same id. Returns the max abs logit difference seen.
fn check_forward(model: &Llama, label: &str) -> f32 {
    let g = golden();
    let fwd = &g["forward"];
    let prompt = ids(&fwd["ids"]);
    let t = prompt.len();
    let logits: Vec<f32> = model
        .forward(model.ids_tensor(&prompt, 1, t), None)
        .into_data()
        .try_into_vec()
        .unwrap();
    let v = model.config.vocab_size;
    let mut worst = 0f32;
    for (pos, row) in fwd["top5"].as_array().unwrap().iter().enumerate() {
        let ours = &logits[pos * v..(pos + 1) * v];
        let top1 = ours
            .iter()
            .enumerate()
            .fold(0, |b, (i, &x)| if x > ours[b] { i } else { b });
        let ref_ids = ids(&row["ids"]);
        assert_eq!(top1 as u32, ref_ids[0], "{label}: top-1 at position {pos}");
        for (id, l) in ref_ids.iter().zip(row["logits"].as_array().unwrap()) {
            let d = (ours[*id as usize] - l.as_f64().unwrap() as f32).abs();
            worst = worst.max(d);
            assert!(
                d <= 2e-2,
                "{label}: position {pos} id {id}: ours {} vs {l}",
                ours[*id as usize]
            );
        }
    }
    worst
}

fn check_greedy(model: &Llama, tok: &Tokenizer, label: &str) {
    let g = golden();
    let prompt = ids(&g["forward"]["ids"]);
    let want = ids(&g["greedy"]["ids"]);
    let o = SamplingOptions {
        max_tokens: want.len() + 4,
        ..Default::default()
    };
    let out = generate(model, tok, &prompt, &o, |_| {}).unwrap();
    assert_eq!(out.ids, want, "{label}: greedy ids");
    assert!(out.stopped, "{label}: stopped on <|im_end|>");
    assert_eq!(
        out.text + "<|im_end|>",
        g["greedy"]["text"].as_str().unwrap()
    );
}

fn check_device(device: &Device, label: &str) {
    let src = ModelSource::open(&model_path()).unwrap();
    let model = Llama::load(&src, device).unwrap();
    let worst = check_forward(&model, label);
    eprintln!("{label}: max |logit - reference| over reference top-5 = {worst:.2e}");
    check_greedy(&model, &src.tokenizer, label);
}

#[test]
fn cpu_logits_and_greedy_match_transformers() {
    check_device(&Device::flex(), "cpu");
}

/// The wgpu device for tests: `ANYTUNE_TEST_WGPU` (vulkan, metal, dx12; default vulkan).
/// Without an adapter the test is skipped, unless `ANYTUNE_REQUIRE_WGPU=1` (our CI) makes it fail.
fn wgpu_device() -> Option<device::OpenedDevice> {
    let choice: DeviceChoice = std::env::var("ANYTUNE_TEST_WGPU")
        .unwrap_or_else(|_| "vulkan".into())
        .parse()
        .unwrap();
    match device::open(choice, |m| eprintln!("{m}")) {
        Ok(d) => Some(d),
        Err(e) if std::env::var("ANYTUNE_REQUIRE_WGPU").is_ok_and(|v| v == "1") => panic!("{e}"),
        Err(e) => {
            eprintln!("SKIPPED: no wgpu adapter: {e}");
            None
        }
    }
}

#[test]
fn wgpu_logits_and_greedy_match_transformers() {
    let Some(dev) = wgpu_device() else { return };
    eprintln!("wgpu device: {}", dev.description);
    check_device(&dev.device, "wgpu");
}

#[test]
fn safetensors_route_matches_gguf_route() {
    let device = Device::flex();
    let gguf = ModelSource::open(&model_path()).unwrap();
    let hf = ModelSource::open(&hf_model_dir()).unwrap();
    assert_eq!(gguf.config, hf.config);
    let prompt = ids(&golden()["forward"]["ids"]);
    let run = |src: &ModelSource| -> Vec<f32> {
        let m = Llama::load(src, &device).unwrap();
        m.forward(m.ids_tensor(&prompt, 1, prompt.len()), None)
            .into_data()
            .try_into_vec()
            .unwrap()
    };
    let (a, b) = (run(&gguf), run(&hf));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    eprintln!("gguf vs safetensors: max |logit diff| = {worst:.2e}");
    assert!(worst <= 1e-3, "max logit difference {worst}");
}
