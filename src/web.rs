//! The browser API (the only wasm-bindgen file): the same loader, model, trainer, generation and
//! PEFT export as the CLI, over WebGPU. Every device readback is awaited (`train_async`,
//! `generate_async`, ...), so nothing blocks the thread; run it in a Web Worker to keep a page
//! responsive. Methods return Promises; a `Trainer` can be stopped while `train` runs.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::Device;
use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::data::load::{describe_problems, load_text};
use crate::data::{ChatTemplate, Message, TokenizeOptions};
use crate::export::peft;
use crate::generate::{SamplingOptions, generate_async};
use crate::model::lora::LoraConfig;
use crate::model::memory::{MemoryPlan, StepShape, activation_bytes, lora_and_optimizer_bytes};
use crate::model::{BaseWeights, Llama, LoadOptions};
use crate::train::{Reporter, StepStats, TrainConfig, eval_loss_async, train_async};
use crate::weights::ModelSource;

#[cfg(target_arch = "wasm32")]
unsafe extern "C" {
    /// Synthesized by wasm-ld; runs static constructors (cubecl's kernel registry uses
    /// `inventory`). Without it every kernel launch falls back to a slow path.
    fn __wasm_call_ctors();
}

#[wasm_bindgen(start)]
pub fn start() {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: called once, at module start, before any other code of this module runs.
    unsafe {
        __wasm_call_ctors();
    }
    console_error_panic_hook::set_once();
}

/// The adapter's limits that decide what fits.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuInfo {
    pub name: String,
    pub backend: String,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub shader_f16: bool,
}

thread_local! {
    static DEVICE: RefCell<Option<(Device, GpuInfo)>> = const { RefCell::new(None) };
}

/// The WebGPU device, opened once per page (burn's runtime can only be initialised once).
async fn device() -> Result<(Device, GpuInfo), JsError> {
    if let Some(d) = DEVICE.with(|d| d.borrow().clone()) {
        return Ok(d);
    }
    use burn::tensor::wgpu::wgpu;
    let instance = wgpu::Instance::default();
    let adapter = instance
        .request_adapter(&wgpu::RequestAdapterOptions::default())
        .await
        .map_err(|e| JsError::new(&format!("no WebGPU adapter: {e}")))?;
    let (info, limits) = (adapter.get_info(), adapter.limits());
    let gpu = GpuInfo {
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size as u64,
        max_buffer_size: limits.max_buffer_size,
        shader_f16: adapter.features().contains(wgpu::Features::SHADER_F16),
    };
    let dev = Device::wgpu_options()
        .init_async()
        .await
        .map_err(|e| JsError::new(&format!("WebGPU init: {e:?}")))?;
    DEVICE.with(|d| *d.borrow_mut() = Some((dev.clone(), gpu.clone())));
    Ok((dev, gpu))
}

/// Only the adapter's limits (for the page to show before a model is chosen).
#[wasm_bindgen(js_name = gpuInfo)]
pub async fn gpu_info() -> Result<JsValue, JsError> {
    let (_, gpu) = device().await?;
    to_js(&gpu)
}

/// A Rust value as a JS object, through JSON text (`JSON.parse`; no extra crate).
fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsError> {
    let text = serde_json::to_string(v).map_err(|e| JsError::new(&e.to_string()))?;
    js_sys::JSON::parse(&text).map_err(|_| JsError::new("JSON.parse failed"))
}

fn err(e: impl std::fmt::Display) -> JsValue {
    JsError::new(&e.to_string()).into()
}

/// Trainer settings from the page: every `TrainConfig` field (same names as the CLI's TOML)
/// plus `memory_budget` (bytes; refuse a model whose planned memory exceeds it, 0 = no check).
struct CreateOptions {
    train: TrainConfig,
    memory_budget: u64,
}

impl CreateOptions {
    fn parse(json: &str) -> Result<Self, JsError> {
        if json.trim().is_empty() {
            return Ok(CreateOptions {
                train: TrainConfig::default(),
                memory_budget: 0,
            });
        }
        let mut v: serde_json::Value =
            serde_json::from_str(json).map_err(|e| JsError::new(&format!("config: {e}")))?;
        let budget = v
            .as_object_mut()
            .and_then(|o| o.remove("memory_budget"))
            .and_then(|b| b.as_u64())
            .unwrap_or(0);
        let train = serde_json::from_value(v).map_err(|e| JsError::new(&format!("config: {e}")))?;
        Ok(CreateOptions {
            train,
            memory_budget: budget,
        })
    }
}

struct State {
    src: ModelSource,
    model: Llama,
    template: ChatTemplate,
    cfg: TrainConfig,
    lora: LoraConfig,
}

/// A model with a LoRA adapter being trained in the page.
#[wasm_bindgen]
pub struct Trainer {
    state: Rc<RefCell<Option<State>>>,
    stop: Arc<AtomicBool>,
    gpu: GpuInfo,
    plan: MemoryPlan,
}

#[wasm_bindgen]
impl Trainer {
    /// Loads a GGUF model (its bytes) with a JSON config (`TrainConfig` fields, e.g.
    /// `{"lora_rank": 8, "lr": 2e-4, "steps": 30, "max_seq_len": 256}`), keeping the quantized
    /// base quantized on the GPU. Fails with a clear message when the model does not fit.
    pub async fn create(model_bytes: Vec<u8>, config_json: String) -> Result<Trainer, JsError> {
        let opts = CreateOptions::parse(&config_json)?;
        let cfg = opts.train;
        let lora = cfg.lora().map_err(|e| JsError::new(&e))?;
        let (dev, gpu) = device().await?;
        let src = ModelSource::from_gguf_bytes(model_bytes, "model.gguf")
            .map_err(|e| JsError::new(&e.to_string()))?;
        let load = LoadOptions {
            base: BaseWeights::Keep,
            max_binding: gpu.max_storage_buffer_binding_size.min(gpu.max_buffer_size) as usize,
        };
        let mut model =
            Llama::load_with(&src, &dev, &load).map_err(|e| JsError::new(&e.to_string()))?;
        model.attach_lora(&lora);
        let n_params: u64 = model
            .adapters()
            .iter()
            .map(|(_, a)| (a.a.dims()[0] * a.a.dims()[1] + a.b.dims()[0] * a.b.dims()[1]) as u64)
            .sum();
        let plan = MemoryPlan {
            base_weights: model.base_bytes() as u64,
            lora_and_optimizer: lora_and_optimizer_bytes(n_params),
            activations: activation_bytes(
                &model.config,
                &StepShape {
                    batch: cfg.batch_size,
                    seq_len: cfg.max_seq_len,
                    labelled: cfg.batch_size * cfg.max_seq_len,
                    rank: lora.rank,
                    targets: lora.targets.len(),
                    dropout: lora.dropout > 0.0,
                    recompute: cfg.recompute,
                    fused: false,
                },
            ),
        };
        if opts.memory_budget > 0 && plan.total() > opts.memory_budget {
            return Err(JsError::new(&format!(
                "this model needs about {} on the GPU at batch {} x {} tokens \
                 (base {}, LoRA + AdamW {}, activations {}), more than the {} budget: \
                 use a smaller model, batch or sequence length, or recompute",
                human(plan.total()),
                cfg.batch_size,
                cfg.max_seq_len,
                human(plan.base_weights),
                human(plan.lora_and_optimizer),
                human(plan.activations),
                human(opts.memory_budget)
            )));
        }
        let template = ChatTemplate::new(src.chat_template.as_deref(), &src.tokenizer)
            .map_err(|e| JsError::new(&e.to_string()))?;
        Ok(Trainer {
            state: Rc::new(RefCell::new(Some(State {
                src,
                model,
                template,
                cfg,
                lora,
            }))),
            stop: Arc::new(AtomicBool::new(false)),
            gpu,
            plan,
        })
    }

    /// The adapter's limits and this model's planned memory (bytes).
    pub fn info(&self) -> Result<JsValue, JsError> {
        #[derive(Serialize)]
        struct Info<'a> {
            gpu: &'a GpuInfo,
            memory: &'a MemoryPlan,
            total: u64,
        }
        to_js(&Info {
            gpu: &self.gpu,
            memory: &self.plan,
            total: self.plan.total(),
        })
    }

    /// Trains on chat / prompt-completion / text JSONL. `on_progress` receives
    /// `{step, totalSteps, loss, lr, tokensPerSecond, evalLoss?}` objects. Resolves to
    /// `{steps, finalEvalLoss, stoppedEarly}`.
    pub fn train(
        &self,
        dataset_jsonl: String,
        eval_jsonl: String,
        on_progress: Function,
    ) -> Promise {
        let state = self.state.clone();
        let stop = self.stop.clone();
        stop.store(false, Ordering::Relaxed);
        future_to_promise(async move {
            let mut guard = state.borrow_mut().take().ok_or_else(|| err("busy"))?;
            let result =
                run_training(&mut guard, &dataset_jsonl, &eval_jsonl, stop, on_progress).await;
            *state.borrow_mut() = Some(guard);
            result
        })
    }

    /// Ends training after the current step.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Hold-out loss of the current adapter on JSONL text.
    pub fn evaluate(&self, jsonl: String) -> Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let st = state.borrow_mut().take().ok_or_else(|| err("busy"))?;
            let r = evaluate(&st, &jsonl).await;
            *state.borrow_mut() = Some(st);
            r.map(JsValue::from_f64)
        })
    }

    /// Answers chat `messages` (JSON array of {role, content}); `options` JSON: `maxTokens`,
    /// `temperature`, `topK`, `topP`, `seed`, and `base: true` for the model without the
    /// adapter. Resolves to the answer text.
    pub fn generate(&self, messages_json: String, options_json: String) -> Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let st = state.borrow_mut().take().ok_or_else(|| err("busy"))?;
            let r = answer(&st, &messages_json, &options_json).await;
            *state.borrow_mut() = Some(st);
            r.map(|s| JsValue::from_str(&s))
        })
    }

    /// The adapter as PEFT files: resolves to `{ "adapter_config.json": string,
    /// "adapter_model.safetensors": Uint8Array }`.
    #[wasm_bindgen(js_name = exportAdapter)]
    pub fn export_adapter(&self) -> Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let st = state.borrow_mut().take().ok_or_else(|| err("busy"))?;
            let r = export(&st).await;
            *state.borrow_mut() = Some(st);
            r
        })
    }
}

fn human(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    }
}

struct JsReporter {
    on_progress: Function,
    last_eval: Option<f64>,
}

impl Reporter for JsReporter {
    fn step(&mut self, s: &StepStats) {
        let o = Object::new();
        let set = |k: &str, v: JsValue| {
            let _ = Reflect::set(&o, &JsValue::from_str(k), &v);
        };
        set("step", (s.step as f64).into());
        set("totalSteps", (s.total_steps as f64).into());
        set("loss", s.loss.into());
        set("lr", s.lr.into());
        set("gradNorm", s.grad_norm.into());
        set("tokens", (s.tokens as f64).into());
        set("seconds", s.seconds.into());
        set(
            "tokensPerSecond",
            (s.tokens as f64 / s.seconds.max(1e-9)).into(),
        );
        if let Some(e) = self.last_eval {
            set("evalLoss", e.into());
        }
        let _ = self.on_progress.call1(&JsValue::NULL, &o);
    }
    fn eval(&mut self, step: usize, loss: f64) {
        self.last_eval = Some(loss);
        let o = Object::new();
        let _ = Reflect::set(&o, &"step".into(), &(step as f64).into());
        let _ = Reflect::set(&o, &"evalLoss".into(), &loss.into());
        let _ = self.on_progress.call1(&JsValue::NULL, &o);
    }
    fn note(&mut self, msg: &str) {
        let o = Object::new();
        let _ = Reflect::set(&o, &"note".into(), &msg.into());
        let _ = self.on_progress.call1(&JsValue::NULL, &o);
    }
}

fn tokenize_options(st: &State) -> TokenizeOptions {
    TokenizeOptions {
        max_seq_len: st.cfg.max_seq_len,
        train_on_prompt: st.cfg.train_on_prompt,
    }
}

async fn run_training(
    st: &mut State,
    dataset: &str,
    eval: &str,
    stop: Arc<AtomicBool>,
    on_progress: Function,
) -> Result<JsValue, JsValue> {
    let o = tokenize_options(st);
    let train = load_text(dataset, "dataset.jsonl", &st.src.tokenizer, &st.template, o);
    if !train.problems.is_empty() && !st.cfg.skip_invalid {
        return Err(err(describe_problems(&train.problems)));
    }
    let (train_examples, held) = if eval.trim().is_empty() {
        crate::data::load::split(train.examples, st.cfg.eval_split, st.cfg.seed)
    } else {
        let e = load_text(eval, "eval.jsonl", &st.src.tokenizer, &st.template, o);
        if !e.problems.is_empty() {
            return Err(err(describe_problems(&e.problems)));
        }
        (train.examples, e.examples)
    };
    if train_examples.is_empty() {
        return Err(err("dataset.jsonl: no training examples"));
    }
    let pad = st.src.tokenizer.pad_or_eos();
    let mut rep = JsReporter {
        on_progress,
        last_eval: None,
    };
    let cfg = st.cfg.clone();
    let out = train_async(
        &mut st.model,
        &cfg,
        &train_examples,
        &held,
        pad,
        None,
        stop,
        &mut rep,
    )
    .await
    .map_err(err)?;
    let o = Object::new();
    let _ = Reflect::set(&o, &"steps".into(), &(out.progress.step as f64).into());
    let _ = Reflect::set(
        &o,
        &"finalEvalLoss".into(),
        &out.final_eval_loss.map_or(JsValue::NULL, JsValue::from_f64),
    );
    let _ = Reflect::set(&o, &"stoppedEarly".into(), &out.stopped_early.into());
    Ok(o.into())
}

async fn evaluate(st: &State, jsonl: &str) -> Result<f64, JsValue> {
    let data = load_text(
        jsonl,
        "eval.jsonl",
        &st.src.tokenizer,
        &st.template,
        tokenize_options(st),
    );
    if !data.problems.is_empty() {
        return Err(err(describe_problems(&data.problems)));
    }
    let mut model = st.model.clone();
    model.set_training(false);
    eval_loss_async(
        &model,
        &data.examples,
        st.cfg.batch_size,
        st.cfg.logits_chunk_bytes,
        st.src.tokenizer.pad_or_eos(),
    )
    .await
    .map_err(err)
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct GenerateOptions {
    max_tokens: Option<usize>,
    temperature: f32,
    top_k: usize,
    top_p: f32,
    seed: u64,
    base: bool,
}

async fn answer(st: &State, messages_json: &str, options_json: &str) -> Result<String, JsValue> {
    let msgs: Vec<Message> =
        serde_json::from_str(messages_json).map_err(|e| err(format!("messages: {e}")))?;
    let g: GenerateOptions = if options_json.trim().is_empty() {
        GenerateOptions::default()
    } else {
        serde_json::from_str(options_json).map_err(|e| err(format!("options: {e}")))?
    };
    let mut model = st.model.clone();
    model.set_training(false);
    model.freeze_adapters();
    if g.base {
        model.detach_lora();
    }
    let o = SamplingOptions {
        max_tokens: g.max_tokens.unwrap_or(128),
        temperature: g.temperature,
        top_k: g.top_k,
        top_p: if g.top_p > 0.0 { g.top_p } else { 1.0 },
        seed: g.seed,
        ignore_stop: false,
    };
    let ids = st
        .src
        .tokenizer
        .encode(&st.template.render(&msgs, true).map_err(err)?)
        .map_err(err)?;
    let out = generate_async(&model, &st.src.tokenizer, &ids, &o, |_| {})
        .await
        .map_err(err)?;
    Ok(out.text)
}

async fn export(st: &State) -> Result<JsValue, JsValue> {
    let tensors = peft::adapter_tensors_async(&st.model).await.map_err(err)?;
    let bytes = peft::to_safetensors(&tensors).map_err(err)?;
    let o = Object::new();
    let _ = Reflect::set(
        &o,
        &"adapter_config.json".into(),
        &peft::config_json(&st.lora, &st.src.name).into(),
    );
    let _ = Reflect::set(
        &o,
        &"adapter_model.safetensors".into(),
        &Uint8Array::from(&bytes[..]).into(),
    );
    Ok(o.into())
}
