//! The `anytune` command line: flags -> library calls. Files, terminals and exit codes live
//! here; everything else is in the library.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::Command as Process;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use anytune::data::load::{describe_problems, load_text, split};
use anytune::data::{ChatTemplate, Example, Message, TokenizeOptions, TokenizedExample};
use anytune::device::{self, DeviceChoice};
use anytune::export::peft;
use anytune::generate::{SamplingOptions, generate};
use anytune::model::{BaseWeights, Llama, LoadOptions};
use anytune::train::checkpoint;
use anytune::train::schedule::Schedule;
use anytune::train::{Checkpoint, Reporter, StepStats, TrainConfig, eval_loss, train};
use anytune::weights::ModelSource;

/// The demo model that `scripts/fetch-model.sh` fetches.
const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Parser)]
#[command(
    name = "anytune",
    version,
    about = "LoRA fine-tuning for Llama-class models on any GPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer one prompt (sent as a user message through the model's chat template).
    Generate(GenerateArgs),
    /// Interactive multi-turn chat (/reset clears the conversation, /exit or Ctrl-D quits).
    Chat(ChatArgs),
    /// Fine-tune a LoRA adapter on chat / prompt-completion / text JSONL.
    Train(Box<TrainArgs>),
    /// Hold-out loss and perplexity of a model (with an optional adapter) on JSONL data.
    Eval(EvalArgs),
    /// Training and generation speed against the PyTorch + PEFT reference, side by side.
    Bench(BenchArgs),
    /// Write chat training data from a teacher's answers (distillation; with --system, context
    /// distillation of that instruction into a prompt-free student).
    Distill(DistillArgs),
    /// Device-memory sizing table for Q4_K_M models kept quantized (base, LoRA + AdamW,
    /// activations with and without per-block recomputation), from the trainer's own accounting.
    Plan(PlanArgs),
    /// Write a tiny random Llama GGUF (2 layers, d 32, byte tokenizer, ChatML, Q8_0/Q4_1) for
    /// fast tests, e.g. of the browser build.
    TinyModel {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// (Re)build RUN_DIR/report.md from a training run's JSON files.
    Report {
        /// The --out directory of `anytune train`
        run_dir: PathBuf,
    },
}

#[derive(Args)]
struct PlanArgs {
    #[arg(long, default_value_t = 512)]
    seq_len: usize,
    #[arg(long, default_value_t = 1)]
    batch: usize,
    #[arg(long, default_value_t = 16)]
    rank: usize,
}

fn run_tiny_model(out: &std::path::Path, seed: u64) -> Result<()> {
    let bytes = anytune::gguf::writer::tiny_llama(seed);
    let tmp = out.with_extension("gguf.tmp");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    println!("{} ({} bytes)", out.display(), bytes.len());
    Ok(())
}

fn run_plan(a: PlanArgs) -> Result<()> {
    use anytune::model::memory::{PRESETS, StepShape, preset, q4_k_m_plan};
    println!(
        "Q4_K_M base kept quantized, seq {}, batch {}, LoRA r {} on all seven projections, no dropout, every token labelled\n",
        a.seq_len, a.batch, a.rank
    );
    println!("| model | recompute | base weights | LoRA + AdamW | activations | total |");
    println!("|---|---|---:|---:|---:|---:|");
    for name in PRESETS {
        // Invariant: PRESETS lists exactly the names `preset` knows.
        let c = preset(name).expect("preset");
        for recompute in [false, true] {
            let s = StepShape {
                batch: a.batch,
                seq_len: a.seq_len,
                labelled: a.batch * a.seq_len,
                rank: a.rank,
                targets: 7,
                dropout: false,
                recompute,
                fused: false,
            };
            let p = q4_k_m_plan(&c, &s);
            println!(
                "| {name} | {} | {} | {} | {} | **{}** |",
                if recompute { "yes" } else { "no" },
                human_bytes(p.base_weights),
                human_bytes(p.lora_and_optimizer),
                human_bytes(p.activations),
                human_bytes(p.total())
            );
        }
    }
    Ok(())
}

#[derive(Args)]
struct ModelArgs {
    /// A .gguf file or a Hugging Face model directory [default: $ANYTUNE_MODEL or the demo model]
    #[arg(long)]
    model: Option<PathBuf>,
    /// auto | vulkan | metal | dx12 | cpu
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// A PEFT LoRA adapter directory to apply (ours or one PEFT wrote)
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// keep: quantized GGUF matrices stay quantized on the GPU, dequantized inside our kernels;
    /// dequantize: f32 copies [default: keep on GPU devices, dequantize on the CPU]
    #[arg(long)]
    base_weights: Option<BaseWeights>,
}

#[derive(Args)]
struct SamplingArgs {
    /// Maximum new tokens
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// 0 = greedy
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Keep the k most likely tokens (0 = all)
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Nucleus sampling threshold (1 = off)
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// The prompt
    #[arg(long)]
    prompt: String,
    /// A system message
    #[arg(long)]
    system: Option<String>,
    /// Send the prompt as raw text, without the chat template
    #[arg(long)]
    raw: bool,
    /// Print only the generated text
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// A system message
    #[arg(long)]
    system: Option<String>,
}

impl SamplingArgs {
    fn options(&self) -> SamplingOptions {
        SamplingOptions {
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            seed: self.seed,
            ignore_stop: false,
        }
    }
}

/// A loaded model ready to talk.
struct Session {
    /// The device as printed (`wgpu/Vulkan: ...`, `cpu (burn flex)`).
    device: String,
    src: ModelSource,
    model: Llama,
    template: ChatTemplate,
}

impl Session {
    /// Generates from `ids`, printing text as it comes, then a newline.
    fn stream(&self, ids: &[u32], o: &SamplingOptions) -> Result<anytune::generate::Generation> {
        let mut out = std::io::stdout();
        let g = generate(&self.model, &self.src.tokenizer, ids, o, |piece| {
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        })?;
        println!();
        Ok(g)
    }
}

fn load(args: &ModelArgs, quiet: bool) -> Result<Session> {
    let note = |m: &str| {
        if !quiet {
            eprintln!("{m}");
        }
    };
    let path = args
        .model
        .clone()
        .or_else(|| std::env::var_os("ANYTUNE_MODEL").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL));
    let dev = device::open(args.device, |m| eprintln!("note: {m}"))?;
    note(&format!("device: {}", dev.description));
    let t0 = std::time::Instant::now();
    let src = ModelSource::open(&path).with_context(|| format!("loading {}", path.display()))?;
    let opts = LoadOptions {
        base: args.base_weights.unwrap_or(if dev.is_gpu {
            BaseWeights::Keep
        } else {
            BaseWeights::Dequantize
        }),
        max_binding: dev.max_binding,
    };
    if opts.base == BaseWeights::Keep && !dev.is_gpu {
        eprintln!(
            "note: --base-weights keep needs a GPU device; the CPU backend dequantizes (same numbers)"
        );
    }
    let mut model = Llama::load_with(&src, &dev.device, &opts)?;
    if let Some(a) = &args.adapter {
        let cfg = peft::load_dir(&mut model, a)
            .with_context(|| format!("loading adapter {}", a.display()))?;
        model.freeze_adapters();
        note(&format!(
            "adapter: {} (r {}, alpha {}, {} layers)",
            a.display(),
            cfg.rank,
            cfg.alpha,
            model.adapters().len()
        ));
    }
    let template = ChatTemplate::new(src.chat_template.as_deref(), &src.tokenizer)?;
    if template.is_fallback {
        eprintln!("warning: {} has no chat template; using ChatML", src.name);
    }
    note(&format!(
        "model: {} ({} layers, d {}, vocab {}) loaded in {:.1}s",
        src.name,
        src.config.num_layers,
        src.config.hidden_size,
        src.config.vocab_size,
        t0.elapsed().as_secs_f64()
    ));
    Ok(Session {
        device: dev.description,
        src,
        model,
        template,
    })
}

fn run_generate(a: GenerateArgs) -> Result<()> {
    let s = load(&a.model, a.quiet)?;
    let text = if a.raw {
        a.prompt.clone()
    } else {
        let mut msgs = Vec::new();
        if let Some(sys) = &a.system {
            msgs.push(Message::new("system", sys));
        }
        msgs.push(Message::new("user", &a.prompt));
        s.template.render(&msgs, true)?
    };
    let ids = s.src.tokenizer.encode(&text)?;
    let g = s.stream(&ids, &a.sampling.options())?;
    if !a.quiet {
        eprintln!(
            "[{} prompt tokens, {} new tokens in {:.2}s: {:.2} tokens/s]",
            g.prompt_tokens,
            g.ids.len(),
            g.seconds,
            g.tokens_per_second()
        );
    }
    Ok(())
}

fn run_chat(a: ChatArgs) -> Result<()> {
    let s = load(&a.model, false)?;
    let mut msgs: Vec<Message> = a
        .system
        .iter()
        .map(|sys| Message::new("system", sys))
        .collect();
    let base = msgs.clone();
    let stdin = std::io::stdin();
    eprintln!("chat: type a message; /reset clears, /exit quits");
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim();
        match line {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                msgs = base.clone();
                continue;
            }
            _ => {}
        }
        msgs.push(Message::new("user", line));
        let ids = s.src.tokenizer.encode(&s.template.render(&msgs, true)?)?;
        let g = s.stream(&ids, &a.sampling.options())?;
        eprintln!(
            "[{} tokens, {:.2} tokens/s]",
            g.ids.len(),
            g.tokens_per_second()
        );
        msgs.push(Message::new("assistant", &g.text));
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Generate(a) => run_generate(a),
        Command::Chat(a) => run_chat(a),
        Command::Train(a) => run_train(*a),
        Command::Eval(a) => run_eval(a),
        Command::Bench(a) => run_bench(a),
        Command::Distill(a) => run_distill(a),
        Command::Plan(a) => run_plan(a),
        Command::TinyModel { out, seed } => run_tiny_model(&out, seed),
        Command::Report { run_dir } => write_report(&run_dir).map(|p| println!("{}", p.display())),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// JSONL hold-out data
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    #[arg(long, default_value_t = 2048)]
    max_seq_len: usize,
    /// Loss and perplexity only: skip answering the prompts
    #[arg(long)]
    no_generate: bool,
    /// New tokens per generated answer
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// Judge answers against this JSON Schema too
    #[arg(long)]
    schema: Option<PathBuf>,
    /// Answer only the first N prompts (0 = all)
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Write every answer and the metrics here as JSON
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Training flags; each overrides the same key of `--config` (TOML), which overrides defaults.
#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Training JSONL
    #[arg(long)]
    data: PathBuf,
    /// Hold-out JSONL (else --eval-split)
    #[arg(long)]
    eval_data: Option<PathBuf>,
    /// Run directory: adapter/, best-adapter/, checkpoint/, metrics.jsonl, loss.svg, summary.json
    #[arg(long)]
    out: PathBuf,
    /// TOML file with any of the options below (flags win)
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue from a checkpoint directory (OUT/checkpoint)
    #[arg(long)]
    resume: Option<PathBuf>,
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long)]
    epochs: Option<f64>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    grad_accum: Option<usize>,
    #[arg(long)]
    max_seq_len: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    /// constant | linear | cosine
    #[arg(long)]
    schedule: Option<Schedule>,
    #[arg(long)]
    warmup_steps: Option<usize>,
    #[arg(long)]
    max_grad_norm: Option<f64>,
    #[arg(long)]
    weight_decay: Option<f64>,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    lora_rank: Option<usize>,
    #[arg(long)]
    lora_alpha: Option<f64>,
    #[arg(long)]
    lora_dropout: Option<f64>,
    /// Comma-separated: q,k,v,o,gate,up,down
    #[arg(long)]
    lora_targets: Option<String>,
    #[arg(long)]
    rslora: bool,
    #[arg(long)]
    train_on_prompt: bool,
    #[arg(long)]
    skip_invalid: bool,
    /// Keep file order instead of a seeded shuffle
    #[arg(long)]
    no_shuffle: bool,
    /// Recompute each block's activations in the backward (less memory, one extra forward)
    #[arg(long)]
    recompute: bool,
    #[arg(long)]
    eval_split: Option<f64>,
    #[arg(long)]
    eval_every: Option<usize>,
    #[arg(long)]
    patience: Option<usize>,
    #[arg(long)]
    save_every: Option<usize>,
    /// Answer the first N hold-out prompts with base and tuned and score them at the end (0 = skip)
    #[arg(long, default_value_t = 16)]
    task_eval: usize,
    /// Skip the forgetting check (general-text perplexity and KL against the base model)
    #[arg(long)]
    no_forgetting_check: bool,
    /// General text for the forgetting check (JSONL `{"text"}`) [default: built-in literature set]
    #[arg(long)]
    general_data: Option<PathBuf>,
    /// Forgetting check: allowed relative perplexity increase (0.05 = 5 %)
    #[arg(long)]
    max_ppl_increase: Option<f64>,
    /// Forgetting check: allowed mean per-token KL(base || tuned)
    #[arg(long)]
    max_kl: Option<f64>,
}

impl TrainArgs {
    fn config(&self) -> Result<TrainConfig> {
        let mut c = match &self.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("{}: invalid training config", p.display()))?
            }
            None => TrainConfig::default(),
        };
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f.clone() { c.$f = v; } )* };
        }
        set!(
            batch_size,
            grad_accum,
            max_seq_len,
            lr,
            schedule,
            warmup_steps,
            max_grad_norm,
            weight_decay,
            seed
        );
        set!(
            lora_rank,
            lora_alpha,
            lora_dropout,
            lora_targets,
            eval_split,
            eval_every,
            patience,
            save_every,
            epochs,
            max_ppl_increase,
            max_kl
        );
        if self.steps.is_some() {
            c.steps = self.steps;
        } else if self.epochs.is_some() {
            c.steps = None;
        }
        c.rslora |= self.rslora;
        c.train_on_prompt |= self.train_on_prompt;
        c.skip_invalid |= self.skip_invalid;
        c.shuffle &= !self.no_shuffle;
        c.recompute |= self.recompute;
        c.forgetting_check &= !self.no_forgetting_check;
        Ok(c)
    }
}

/// Loads and tokenizes a JSONL file, refusing (strict) or reporting (--skip-invalid) problems.
fn read_data(
    path: &std::path::Path,
    s: &Session,
    o: TokenizeOptions,
    skip_invalid: bool,
) -> Result<Vec<TokenizedExample>> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("reading {name}"))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{name}: not UTF-8 text (byte {})",
            e.utf8_error().valid_up_to()
        )
    })?;
    let loaded = load_text(&text, &name, &s.src.tokenizer, &s.template, o);
    if !loaded.problems.is_empty() {
        let list = describe_problems(&loaded.problems);
        if !skip_invalid || loaded.examples.is_empty() {
            anyhow::bail!(
                "{} problem(s) in {name}; nothing was trained{}:\n{list}",
                loaded.problems.len(),
                if skip_invalid {
                    ""
                } else {
                    " (fix them, or pass --skip-invalid to train on the rest)"
                }
            );
        }
        eprintln!(
            "warning: skipping {} invalid example(s) of {name}:\n{list}",
            loaded.problems.len()
        );
    }
    Ok(loaded.examples)
}

fn perplexity(loss: f64) -> f64 {
    loss.exp()
}

/// Rows of a base-vs-tuned table (one column when there is no adapter).
struct Table {
    two: bool,
}

impl Table {
    fn header(&self) {
        println!(
            "{:<28}{}",
            "",
            if self.two {
                "      base     tuned"
            } else {
                "     model"
            }
        );
    }

    fn row(&self, name: &str, b: f64, t: f64, pct: bool) {
        let f = |x: f64| {
            if pct {
                format!("{:>9.1}%", 100.0 * x)
            } else {
                format!("{x:>10.5}")
            }
        };
        if self.two {
            println!("{name:<28}{}{}", f(b), f(t))
        } else {
            println!("{name:<28}{}", f(b))
        }
    }
}

/// Answers `cases` with both models, prints the task-metric rows and returns eval.json's value.
fn task_eval(
    s: &Session,
    base: &Llama,
    tuned: &Llama,
    table: &Table,
    cases: &[anytune::eval::tasks::Case],
    max_new_tokens: usize,
    schema: Option<&anytune::eval::tasks::Schema>,
) -> Result<serde_json::Value> {
    let answer = |m: &Llama, who: &str| {
        let r = anytune::eval::tasks::answer_all(
            m,
            &s.src.tokenizer,
            &s.template,
            cases,
            max_new_tokens,
            schema,
            |i| eprint!("\r{who}: answered {i}/{}", cases.len()),
        );
        eprintln!();
        r
    };
    let b = answer(base, "base")?;
    let t = if table.two {
        answer(tuned, "tuned")?
    } else {
        b.clone()
    };
    let (bm, tm) = (&b.metrics, &t.metrics);
    table.row("exact match", bm.exact_match, tm.exact_match, true);
    if bm.n_json > 0 {
        table.row("valid JSON", bm.valid_json, tm.valid_json, true);
        table.row("exact key set", bm.exact_keys, tm.exact_keys, true);
        for (k, v) in &bm.fields {
            table.row(&format!("field {k}"), *v, tm.fields[k], true);
        }
        table.row("all fields correct", bm.all_fields, tm.all_fields, true);
    }
    if let (Some(x), Some(y)) = (b.schema_valid, t.schema_valid) {
        table.row("JSON Schema valid", x, y, true);
    }
    let rows: Vec<serde_json::Value> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| serde_json::json!({"prompt": c.prompt, "expected": c.expected, "base": b.texts[i], "tuned": t.texts[i]}))
        .collect();
    Ok(serde_json::json!({"base": b.metrics, "tuned": t.metrics,
        "schema_valid": {"base": b.schema_valid, "tuned": t.schema_valid}, "answers": rows}))
}

/// The chat cases (prompt, expected answer) of a JSONL file.
fn cases_of(path: &std::path::Path) -> Result<Vec<anytune::eval::tasks::Case>> {
    let text = std::fs::read_to_string(path)?;
    let examples: Vec<Example> = anytune::data::jsonl::parse(&text, &path.display().to_string())
        .examples
        .into_iter()
        .map(|e| e.example)
        .collect();
    Ok(anytune::eval::tasks::cases(&examples))
}

fn run_eval(a: EvalArgs) -> Result<()> {
    let s = load(&a.model, false)?;
    let o = TokenizeOptions {
        max_seq_len: a.max_seq_len,
        train_on_prompt: false,
    };
    let data = read_data(&a.data, &s, o, false)?;
    let pad = s.src.tokenizer.pad_or_eos();
    let chunk = anytune::train::loss::DEFAULT_LOGITS_CHUNK_BYTES;
    let n: usize = data.iter().map(|e| e.n_labels()).sum();
    let tuned_loss = eval_loss(&s.model, &data, a.batch_size, chunk, pad)?;
    let table = Table {
        two: !s.model.adapters().is_empty(),
    };
    let mut base = s.model.clone();
    base.detach_lora();
    let base_loss = if table.two {
        eval_loss(&base, &data, a.batch_size, chunk, pad)?
    } else {
        tuned_loss
    };
    println!("{} examples, {n} labelled tokens", data.len());
    table.header();
    table.row("hold-out loss", base_loss, tuned_loss, false);
    table.row(
        "perplexity",
        perplexity(base_loss),
        perplexity(tuned_loss),
        false,
    );
    if a.no_generate {
        return Ok(());
    }
    let mut cases = cases_of(&a.data)?;
    if a.limit > 0 {
        cases.truncate(a.limit);
    }
    let schema = match &a.schema {
        Some(p) => Some(anytune::eval::tasks::Schema::new(
            &std::fs::read_to_string(p)?,
            &p.display().to_string(),
        )?),
        None => None,
    };
    let mut j = task_eval(
        &s,
        &base,
        &s.model,
        &table,
        &cases,
        a.max_new_tokens,
        schema.as_ref(),
    )?;
    j["holdout_loss"] =
        serde_json::json!({"base": base_loss, "tuned": tuned_loss, "labelled_tokens": n});
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&j)?)?;
    }
    Ok(())
}

/// Progress bar, metrics.jsonl, checkpoints: the CLI's view of the loop.
struct CliReporter {
    bar: indicatif::ProgressBar,
    metrics: std::fs::File,
    out: PathBuf,
    cfg: TrainConfig,
    train_curve: Vec<(usize, f64)>,
    eval_curve: Vec<(usize, f64)>,
    tokens: usize,
    seconds: f64,
}

impl Reporter for CliReporter {
    fn step(&mut self, s: &StepStats) {
        self.tokens += s.tokens;
        self.seconds += s.seconds;
        self.train_curve.push((s.step, s.loss));
        let _ = writeln!(
            self.metrics,
            "{}",
            serde_json::json!({"type": "train", "step": s.step, "loss": s.loss, "lr": s.lr,
            "grad_norm": s.grad_norm, "tokens": s.tokens, "label_tokens": s.label_tokens, "seconds": s.seconds, "skipped": s.skipped})
        );
        self.bar.set_position(s.step as u64);
        self.bar.set_message(format!(
            "loss {:.4}  lr {:.2e}  {:.1} tok/s",
            s.loss,
            s.lr,
            self.tokens as f64 / self.seconds.max(1e-9)
        ));
    }
    fn eval(&mut self, step: usize, loss: f64) {
        self.eval_curve.push((step, loss));
        let _ = writeln!(
            self.metrics,
            "{}",
            serde_json::json!({"type": "eval", "step": step, "loss": loss, "perplexity": perplexity(loss)})
        );
        self.bar.println(format!(
            "step {step}: hold-out loss {loss:.5} (perplexity {:.4})",
            perplexity(loss)
        ));
    }
    fn note(&mut self, msg: &str) {
        self.bar.println(format!("note: {msg}"));
    }
    fn checkpoint(&mut self, ck: &Checkpoint) -> anytune::Result<()> {
        let files = checkpoint::to_files(ck, &self.cfg)?;
        anytune::util::write_dir_atomic(&self.out.join("checkpoint"), &files)?;
        self.bar.println(format!(
            "step {}: checkpoint saved to {}",
            ck.progress.step,
            self.out.join("checkpoint").display()
        ));
        Ok(())
    }
}

fn human_bytes(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    }
}

/// The memory report: what the device holds for the base, the adapters with AdamW state, and
/// (estimated by `model::memory` for the largest batch) the activations.
fn print_memory_plan(
    model: &Llama,
    cfg: &TrainConfig,
    lora: &anytune::model::lora::LoraConfig,
    train_set: &[anytune::data::TokenizedExample],
    n_params: usize,
) {
    use anytune::model::memory::{
        MemoryPlan, StepShape, activation_bytes, lora_and_optimizer_bytes,
    };
    let longest = train_set.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    let mut labels: Vec<usize> = train_set.iter().map(|e| e.n_labels()).collect();
    labels.sort_unstable_by(|a, b| b.cmp(a));
    let shape = StepShape {
        batch: cfg.batch_size,
        seq_len: longest,
        labelled: labels.iter().take(cfg.batch_size).sum(),
        rank: lora.rank,
        targets: lora.targets.len(),
        dropout: lora.dropout > 0.0,
        recompute: cfg.recompute,
        fused: anytune::kernels::cpu_ops::available(&model.device),
    };
    let plan = MemoryPlan {
        base_weights: model.base_bytes() as u64,
        lora_and_optimizer: lora_and_optimizer_bytes(n_params as u64),
        activations: activation_bytes(&model.config, &shape),
    };
    let kept = model
        .blocks
        .first()
        .is_some_and(|b| matches!(b.q.weight, anytune::model::layers::BaseWeight::Quant(_)));
    eprintln!(
        "device memory: base weights {} ({}), LoRA + AdamW {}, activations ~{} (batch {} x {} tokens{}), total ~{}",
        human_bytes(plan.base_weights),
        if kept { "kept quantized" } else { "f32" },
        human_bytes(plan.lora_and_optimizer),
        human_bytes(plan.activations),
        shape.batch,
        shape.seq_len,
        if cfg.recompute {
            ", recomputed per block"
        } else {
            ""
        },
        human_bytes(plan.total())
    );
    if let Some(u) = model.device.memory_pool_usage() {
        eprintln!(
            "device allocator before training: {} in use, {} reserved",
            human_bytes(u.bytes_in_use),
            human_bytes(u.bytes_reserved)
        );
    }
}

fn run_train(a: TrainArgs) -> Result<()> {
    let cfg = a.config()?;
    let lora = cfg.lora().map_err(anyhow::Error::msg)?;
    let s = load(&a.model, false)?;
    let o = TokenizeOptions {
        max_seq_len: cfg.max_seq_len,
        train_on_prompt: cfg.train_on_prompt,
    };
    // Validate every input before anything is written.
    let train_all = read_data(&a.data, &s, o, cfg.skip_invalid)?;
    let (train_set, mut eval_set) = split(train_all, cfg.eval_split, cfg.seed);
    if let Some(e) = &a.eval_data {
        eval_set = read_data(e, &s, o, cfg.skip_invalid)?;
    }
    let resume = match &a.resume {
        Some(dir) => Some(
            checkpoint::load_dir(dir)
                .with_context(|| format!("resuming from {}", dir.display()))?
                .0,
        ),
        None => None,
    };
    let pad = s.src.tokenizer.pad_or_eos();
    let total = cfg.total_steps(train_set.len());
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut model = s.model.clone();
    model.detach_lora();
    let base_eval = if eval_set.is_empty() {
        None
    } else {
        Some(eval_loss(
            &model,
            &eval_set,
            cfg.batch_size,
            cfg.logits_chunk_bytes,
            pad,
        )?)
    };
    if let Some(l) = base_eval {
        eprintln!(
            "base model hold-out loss {l:.5} (perplexity {:.4}) on {} examples",
            perplexity(l),
            eval_set.len()
        );
    }
    model.attach_lora(&lora);
    let n_params: usize = model
        .adapters()
        .iter()
        .map(|(_, ad)| {
            ad.a.dims().iter().product::<usize>() + ad.b.dims().iter().product::<usize>()
        })
        .sum();
    eprintln!(
        "training {} examples for {total} steps (batch {}, accum {}, lr {:.1e} {:?}); LoRA r {} alpha {} on {} layers: {n_params} parameters",
        train_set.len(),
        cfg.batch_size,
        cfg.grad_accum,
        cfg.lr,
        cfg.schedule,
        lora.rank,
        lora.alpha,
        model.adapters().len()
    );
    print_memory_plan(&model, &cfg, &lora, &train_set, n_params);
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}  ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let metrics = std::fs::File::create(a.out.join("metrics.jsonl"))?;
    let mut rep = CliReporter {
        bar,
        metrics,
        out: a.out.clone(),
        cfg: cfg.clone(),
        train_curve: vec![],
        eval_curve: vec![],
        tokens: 0,
        seconds: 0.0,
    };
    if let Some(l) = base_eval {
        rep.eval_curve.push((0, l));
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let outcome = train(
        &mut model, &cfg, &train_set, &eval_set, pad, resume, stop, &mut rep,
    )?;
    rep.bar.finish_and_clear();
    if let Some(u) = model.device.memory_pool_usage() {
        eprintln!(
            "device allocator after training: {} in use, {} reserved (pages kept for reuse: about the peak)",
            human_bytes(u.bytes_in_use),
            human_bytes(u.bytes_reserved)
        );
    }
    let base_name = s.src.name.clone();
    peft::save_dir(&model, &lora, &base_name, &a.out.join("adapter"))?;
    if let Some(best) = &outcome.best_adapter {
        let files = [
            (
                "adapter_config.json",
                peft::config_json(&lora, &base_name).into_bytes(),
            ),
            ("adapter_model.safetensors", peft::to_safetensors(best)?),
        ];
        anytune::util::write_dir_atomic(&a.out.join("best-adapter"), &files)?;
    }
    std::fs::write(
        a.out.join("loss.svg"),
        anytune::train::plot::loss_svg(&rep.train_curve, &rep.eval_curve),
    )?;
    let summary = serde_json::json!({
        "steps": outcome.progress.step, "tokens": rep.tokens, "seconds": rep.seconds,
        "tokens_per_second": rep.tokens as f64 / rep.seconds.max(1e-9),
        "holdout_loss_before": base_eval, "holdout_loss_after": outcome.final_eval_loss,
        "best_holdout_loss": outcome.progress.best_eval_loss, "best_step": outcome.progress.best_step,
        "stopped_early": outcome.stopped_early, "config": cfg,
    });
    std::fs::write(
        a.out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    println!(
        "trained {} steps, {} tokens in {:.1}s ({:.1} tokens/s)",
        outcome.progress.step,
        rep.tokens,
        rep.seconds,
        rep.tokens as f64 / rep.seconds.max(1e-9)
    );
    if let (Some(b), Some(f)) = (base_eval, outcome.final_eval_loss) {
        println!(
            "hold-out loss: {b:.5} -> {f:.5} (perplexity {:.3} -> {:.3})",
            perplexity(b),
            perplexity(f)
        );
    }
    println!(
        "adapter: {}  (best: {}; curve: {})",
        a.out.join("adapter").display(),
        a.out.join("best-adapter").display(),
        a.out.join("loss.svg").display()
    );
    after_training(&s, &model, &a, &cfg)
}

/// The forgetting check after training: prints the verdict and both models' answers to the
/// general prompts, writes forgetting.json.
fn forgetting(
    s: &Session,
    base: &Llama,
    tuned: &Llama,
    a: &TrainArgs,
    cfg: &TrainConfig,
) -> Result<()> {
    use anytune::eval::forgetting::{
        GENERAL_PROMPTS, GENERAL_TEXT, Thresholds, check, parse_prompts,
    };
    let (text, name) = match &a.general_data {
        Some(p) => (
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            p.display().to_string(),
        ),
        None => (
            GENERAL_TEXT.to_string(),
            "built-in general set (assets/general/literature.jsonl)".to_string(),
        ),
    };
    let o = TokenizeOptions {
        max_seq_len: 2048,
        train_on_prompt: false,
    };
    let general = load_text(&text, &name, &s.src.tokenizer, &s.template, o);
    if !general.problems.is_empty() {
        anyhow::bail!(
            "forgetting check data:\n{}",
            describe_problems(&general.problems)
        );
    }
    let th = Thresholds {
        max_ppl_increase: cfg.max_ppl_increase,
        max_kl: cfg.max_kl,
    };
    let r = check(
        base,
        tuned,
        &s.src.tokenizer,
        &s.template,
        &general.examples,
        &parse_prompts(GENERAL_PROMPTS)?,
        48,
        th,
    )?;
    println!(
        "\nforgetting check on {name}: perplexity {:.3} -> {:.3}",
        r.base_ppl, r.tuned_ppl
    );
    for (q, b, t) in &r.answers {
        println!(
            "  {q}\n    base:  {}\n    tuned: {}",
            b.replace('\n', " "),
            t.replace('\n', " ")
        );
    }
    println!("{}", r.verdict);
    std::fs::write(
        a.out.join("forgetting.json"),
        serde_json::to_string_pretty(&r)?,
    )?;
    Ok(())
}

/// After training: task metrics on the hold-out prompts (base vs tuned; chat hold-out files),
/// the forgetting check, then `report.md` from the run directory's JSON files.
fn after_training(s: &Session, trained: &Llama, a: &TrainArgs, cfg: &TrainConfig) -> Result<()> {
    let mut tuned = trained.clone();
    tuned.freeze_adapters();
    let mut base = tuned.clone();
    base.detach_lora();
    if let Some(path) = a.eval_data.as_ref().filter(|_| a.task_eval > 0) {
        let mut cases = cases_of(path)?;
        cases.truncate(a.task_eval);
        if !cases.is_empty() {
            println!("\ntask metrics on {} hold-out prompts:", cases.len());
            let table = Table { two: true };
            table.header();
            let j = task_eval(s, &base, &tuned, &table, &cases, 128, None)?;
            for row in j["answers"].as_array().into_iter().flatten().take(2) {
                println!("\n--- expected: {}", row["expected"].as_str().unwrap_or(""));
                println!(
                    "base:     {}",
                    row["base"].as_str().unwrap_or("").replace('\n', " ")
                );
                println!(
                    "tuned:    {}",
                    row["tuned"].as_str().unwrap_or("").replace('\n', " ")
                );
            }
            std::fs::write(a.out.join("eval.json"), serde_json::to_string_pretty(&j)?)?;
        }
    }
    if cfg.forgetting_check {
        forgetting(s, &base, &tuned, a, cfg)?;
    }
    let report = write_report(&a.out)?;
    println!("\nreport: {}", report.display());
    Ok(())
}

/// (Re)writes RUN_DIR/report.md from summary.json, eval.json and forgetting.json.
fn write_report(dir: &std::path::Path) -> Result<PathBuf> {
    let read = |f: &str| -> Result<Option<serde_json::Value>> {
        let p = dir.join(f);
        if !p.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&p)?;
        Ok(Some(serde_json::from_str(&text).with_context(|| {
            format!("{}: invalid JSON", p.display())
        })?))
    };
    let summary = read("summary.json")?
        .with_context(|| format!("{} has no summary.json: not a run directory", dir.display()))?;
    let md = anytune::eval::report::render(
        &summary,
        read("eval.json")?.as_ref(),
        read("forgetting.json")?.as_ref(),
    );
    let out = dir.join("report.md");
    std::fs::write(&out, md)?;
    Ok(out)
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The reference folder (bench_speed.py, data/)
    #[arg(long, default_value = "../shared/reference")]
    reference: PathBuf,
    /// Python with torch + transformers + peft for the reference side [default: $ANYTUNE_TORCH_PYTHON]
    #[arg(long)]
    python: Option<PathBuf>,
    /// The model as a Hugging Face checkpoint for the reference [default: $ANYTUNE_HF_MODEL]
    #[arg(long)]
    hf_model: Option<PathBuf>,
    /// Training steps (the first is reported apart as warm-up)
    #[arg(long, default_value_t = 4)]
    steps: usize,
    #[arg(long, default_value_t = 3)]
    gen_prompts: usize,
    #[arg(long, default_value_t = 64)]
    gen_tokens: usize,
    /// Also write the results here as JSON
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep only the last N tokens of every training example (for slow software adapters; the
    /// reference comparison and its loss guard are skipped then)
    #[arg(long)]
    truncate: Option<usize>,
    /// Do not run the PyTorch reference
    #[arg(long)]
    no_reference: bool,
    /// Run our side twice, in separate processes, with --base-weights keep and dequantize, and
    /// print base-weight memory, peak process memory and training speed side by side
    #[arg(long)]
    compare_base_weights: bool,
}

/// `bench --compare-base-weights`: one child process per mode (peak memory is per process).
fn run_bench_compare(a: &BenchArgs) -> Result<()> {
    let exe = std::env::current_exe()?;
    let mut results = Vec::new();
    for mode in ["keep", "dequantize"] {
        let json =
            std::env::temp_dir().join(format!("anytune-bench-{mode}-{}.json", std::process::id()));
        let mut cmd = Process::new(&exe);
        cmd.arg("bench")
            .args(["--base-weights", mode, "--no-reference"])
            .arg("--device")
            .arg(format!("{:?}", a.model.device).to_lowercase())
            .arg("--reference")
            .arg(&a.reference)
            .args(["--steps", &a.steps.to_string()])
            .args(["--gen-prompts", &a.gen_prompts.to_string()])
            .args(["--gen-tokens", &a.gen_tokens.to_string()])
            .arg("--json")
            .arg(&json);
        if let Some(m) = &a.model.model {
            cmd.arg("--model").arg(m);
        }
        if let Some(n) = a.truncate {
            cmd.args(["--truncate", &n.to_string()]);
        }
        eprintln!("bench: --base-weights {mode} ...");
        let status = cmd.stdout(std::process::Stdio::null()).status()?;
        anyhow::ensure!(
            status.success(),
            "bench with --base-weights {mode} failed ({status})"
        );
        let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
        let _ = std::fs::remove_file(&json);
        results.push(j);
    }
    let (k, d) = (&results[0], &results[1]);
    let f = |j: &serde_json::Value, p: &str| j.pointer(p).and_then(|v| v.as_f64());
    let (lk, ld) = (
        f(k, "/anytune/first_step_loss").unwrap_or(f64::NAN),
        f(d, "/anytune/first_step_loss").unwrap_or(f64::NAN),
    );
    let rel = ((lk - ld) / ld).abs();
    anyhow::ensure!(
        rel < 1e-4,
        "first-step loss keep {lk:.6} vs dequantize {ld:.6} differ by {rel:.1e} (> 1e-4): not reporting"
    );
    println!("device: {}", k["device"].as_str().unwrap_or("?"));
    println!(
        "first-step loss: keep {lk:.6}, dequantize {ld:.6} (rel diff {rel:.1e}){}",
        a.truncate
            .map_or(String::new(), |n| format!("; examples cut to {n} tokens"))
    );
    println!(
        "| {:<40} | {:>14} | {:>14} | {:>7} |",
        "metric", "keep", "dequantize", "ratio"
    );
    println!(
        "|{}|{}|{}|{}|",
        "-".repeat(42),
        "-".repeat(16),
        "-".repeat(16),
        "-".repeat(9)
    );
    let mib = 1048576.0;
    for (name, p, scale, unit) in [
        (
            "device memory: base weights",
            "/anytune/base_weight_bytes",
            mib,
            "MiB",
        ),
        (
            "device allocator after training",
            "/anytune/device_reserved_after_training",
            mib,
            "MiB",
        ),
        (
            "activations (model::memory estimate)",
            "/anytune/activations_estimate",
            mib,
            "MiB",
        ),
        ("peak process memory", "/anytune_peak_rss_mb", 1.0, "MB"),
        (
            "training tokens/s (non-padding)",
            "/anytune/train_tokens_per_s",
            1.0,
            "tok/s",
        ),
        ("seconds per step", "/anytune/seconds_per_step", 1.0, "s"),
        (
            "greedy generation tokens/s (b=1)",
            "/anytune/gen_tokens_per_s",
            1.0,
            "tok/s",
        ),
    ] {
        let (x, y) = (f(k, p).map(|v| v / scale), f(d, p).map(|v| v / scale));
        let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} {unit}"));
        let ratio = match (x, y) {
            (Some(x), Some(y)) if y > 0.0 => format!("{:.2}x", x / y),
            _ => "-".into(),
        };
        println!(
            "| {name:<40} | {:>14} | {:>14} | {ratio:>7} |",
            cell(x),
            cell(y)
        );
    }
    if let Some(path) = &a.json {
        let j = serde_json::json!({"date": chrono_like_date(), "machine": machine(), "keep": k, "dequantize": d});
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&j)?)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Peak resident memory of this process, MB (Linux).
fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|x| x.trim().to_string())
    });
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0 / 1024.0);
    serde_json::json!({"cpu": cpu, "cores": std::thread::available_parallelism().map(|n| n.get()).ok(), "memory_gib": mem, "os": std::env::consts::OS})
}

/// Runs bench_speed.py; `Err(reason)` when the reference side cannot run here.
fn reference_bench(a: &BenchArgs) -> std::result::Result<serde_json::Value, String> {
    let py = a.python.clone().or_else(|| std::env::var_os("ANYTUNE_TORCH_PYTHON").map(PathBuf::from)).ok_or(
        "no Python with torch given (--python or ANYTUNE_TORCH_PYTHON; ../shared/reference/peft/README.md builds one)",
    )?;
    let hf = a.hf_model.clone().or_else(|| std::env::var_os("ANYTUNE_HF_MODEL").map(PathBuf::from)).ok_or(
        "no Hugging Face checkpoint of the model (--hf-model or ANYTUNE_HF_MODEL; scripts/test.sh writes one)",
    )?;
    let ok = Process::new(&py)
        .args(["-c", "import torch, transformers, peft"])
        .output()
        .map_err(|e| format!("{}: {e}", py.display()))?;
    if !ok.status.success() {
        return Err(format!(
            "{} cannot import torch, transformers and peft",
            py.display()
        ));
    }
    let out = std::env::temp_dir().join(format!("anytune-ref-bench-{}.json", std::process::id()));
    eprintln!("reference: running bench_speed.py (PyTorch + PEFT) ...");
    let status = Process::new(&py)
        .arg(a.reference.join("peft/bench_speed.py"))
        .arg("--model")
        .arg(&hf)
        .arg("--data")
        .arg(a.reference.join("data"))
        .args([
            "--train-steps",
            &a.steps.to_string(),
            "--gen-prompts",
            &a.gen_prompts.to_string(),
            "--gen-tokens",
            &a.gen_tokens.to_string(),
        ])
        .arg("--json")
        .arg(&out)
        .env("HF_HUB_OFFLINE", "1")
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("bench_speed.py failed ({status})"));
    }
    let text = std::fs::read_to_string(&out).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&out);
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

fn run_bench(a: BenchArgs) -> Result<()> {
    if a.compare_base_weights {
        return run_bench_compare(&a);
    }
    let s = load(&a.model, false)?;
    let data = a.reference.join("data");
    let o = TokenizeOptions {
        max_seq_len: 256,
        train_on_prompt: false,
    };
    let train_set = read_data(&data.join("train.jsonl"), &s, o, false)?;
    let prompts: Vec<Vec<Message>> = cases_of(&data.join("holdout.jsonl"))?
        .into_iter()
        .take(a.gen_prompts)
        .map(|c| c.prompt)
        .collect();
    let mut model = s.model.clone();
    let ours = anytune::bench::run(
        &mut model,
        &s.src.tokenizer,
        &s.template,
        &train_set,
        &prompts,
        a.steps,
        a.gen_tokens,
        a.truncate,
        |l| eprintln!("anytune: {l}"),
    )?;
    let ours_rss = peak_rss_mb();
    let reference = if a.no_reference {
        Err("--no-reference".to_string())
    } else if a.truncate.is_some() {
        Err("--truncate: not the reference's settings".to_string())
    } else {
        reference_bench(&a)
    };
    let r = |k: &str| reference.as_ref().ok().and_then(|j| j[k].as_f64());
    let row = |name: &str, o: Option<f64>, rf: Option<f64>, unit: &str| {
        let ratio = match (o, rf) {
            (Some(x), Some(y)) if y > 0.0 => format!("{:.2}x", x / y),
            _ => "-".into(),
        };
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} {unit}"));
        println!("| {name:<34} | {:>14} | {:>14} | {ratio:>7} |", f(o), f(rf));
    };
    println!("device: {}", s.device);
    println!(
        "| {:<34} | {:>14} | {:>14} | {:>7} |",
        "metric", "anytune", "PyTorch+PEFT", "ratio"
    );
    println!(
        "|{}|{}|{}|{}|",
        "-".repeat(36),
        "-".repeat(16),
        "-".repeat(16),
        "-".repeat(9)
    );
    row(
        "training tokens/s (non-padding)",
        Some(ours.train_tokens_per_s),
        r("train_tokens_per_s"),
        "tok/s",
    );
    row(
        "training labelled tokens/s",
        Some(ours.train_label_tokens_per_s),
        None,
        "tok/s",
    );
    row(
        "first step tokens/s (warm-up)",
        Some(ours.train_first_step_tokens_per_s),
        r("train_first_step_tokens_per_s"),
        "tok/s",
    );
    row("seconds per step", Some(ours.seconds_per_step), None, "s");
    row(
        "greedy generation tokens/s (b=1)",
        Some(ours.gen_tokens_per_s),
        r("gen_tokens_per_s"),
        "tok/s",
    );
    row("peak process memory", ours_rss, r("peak_rss_mb"), "MB");
    row(
        "device memory: base weights",
        Some(ours.base_weight_bytes as f64 / 1048576.0),
        None,
        "MB",
    );
    row(
        "device memory: LoRA + AdamW",
        Some(ours.lora_and_optimizer_bytes as f64 / 1048576.0),
        None,
        "MB",
    );
    if a.truncate.is_none() {
        println!(
            "first-step loss {:.6} (reference {:.6}): speed is comparable",
            ours.first_step_loss,
            anytune::bench::REFERENCE_FIRST_LOSS
        );
    }
    if let Err(why) = &reference {
        println!("reference side skipped: {why}");
    }
    if let Some(path) = &a.json {
        let j = serde_json::json!({
            "date": chrono_like_date(), "machine": machine(), "device": s.device,
            "settings": {"batch_size": 4, "lora_rank": 8, "lora_alpha": 16, "targets": "all seven", "steps": a.steps,
                          "gen_prompts": a.gen_prompts, "gen_tokens": a.gen_tokens},
            "anytune": ours, "anytune_peak_rss_mb": ours_rss,
            "reference": reference.as_ref().ok(), "reference_skipped": reference.as_ref().err(),
        });
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&j)?)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Today's date (UTC) as YYYY-MM-DD, from the system clock.
fn chrono_like_date() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86400) as i64;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[derive(Args)]
struct DistillArgs {
    /// The teacher: a .gguf file or Hugging Face directory
    #[arg(long)]
    teacher: PathBuf,
    /// auto | vulkan | metal | dx12 | cpu
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// A PEFT adapter for the teacher
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// keep | dequantize (see `train --help`)
    #[arg(long)]
    base_weights: Option<BaseWeights>,
    /// Prompts: JSONL of chat lines (their last assistant turn, if any, is replaced) or {"prompt"}
    #[arg(long)]
    prompts: PathBuf,
    /// Written chat JSONL for `anytune train`
    #[arg(long)]
    out: PathBuf,
    /// An instruction only the teacher sees (context distillation: the student learns to act as
    /// if it had it)
    #[arg(long)]
    system: Option<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// The prompt messages of one distillation line.
fn distill_prompt(ex: &Example) -> Option<Vec<Message>> {
    match ex {
        Example::Chat(m) => {
            let end = m
                .iter()
                .rposition(|x| x.role == "assistant")
                .unwrap_or(m.len());
            Some(m[..end].to_vec()).filter(|p| p.last().is_some_and(|x| x.role == "user"))
        }
        Example::PromptCompletion { prompt, .. } => Some(vec![Message::new("user", prompt)]),
        Example::Text(_) => None,
    }
}

fn run_distill(a: DistillArgs) -> Result<()> {
    let args = ModelArgs {
        model: Some(a.teacher.clone()),
        device: a.device,
        adapter: a.adapter.clone(),
        base_weights: a.base_weights,
    };
    let s = load(&args, false)?;
    let name = a.prompts.display().to_string();
    let text = std::fs::read_to_string(&a.prompts).with_context(|| format!("reading {name}"))?;
    let parsed = anytune::data::jsonl::parse_prompts(&text, &name);
    let mut problems = parsed.problems;
    let mut prompts = Vec::new();
    for e in &parsed.examples {
        match distill_prompt(&e.example) {
            Some(p) => prompts.push(p),
            None => problems.push(anytune::data::Problem {
                file: name.clone(),
                line: e.line,
                reason: "no user turn to answer".into(),
            }),
        }
    }
    if !problems.is_empty() {
        anyhow::bail!(
            "{} problem(s) in {name}:\n{}",
            problems.len(),
            describe_problems(&problems)
        );
    }
    let mut lines = Vec::with_capacity(prompts.len());
    for (i, p) in prompts.iter().enumerate() {
        let mut teacher_msgs = Vec::new();
        if let Some(sys) = &a.system {
            teacher_msgs.push(Message::new("system", sys));
        }
        teacher_msgs.extend(
            p.iter()
                .filter(|m| a.system.is_none() || m.role != "system")
                .cloned(),
        );
        let ids = s
            .src
            .tokenizer
            .encode(&s.template.render(&teacher_msgs, true)?)?;
        let g = generate(
            &s.model,
            &s.src.tokenizer,
            &ids,
            &a.sampling.options(),
            |_| {},
        )?;
        eprint!("\rdistill: {}/{}", i + 1, prompts.len());
        let mut student = p.clone();
        student.push(Message::new("assistant", g.text.trim()));
        lines.push(serde_json::json!({"messages": student}).to_string());
    }
    eprintln!();
    let tmp = a.out.with_extension("jsonl.tmp");
    std::fs::write(&tmp, lines.join("\n") + "\n")
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &a.out)?;
    println!("wrote {} examples to {}", lines.len(), a.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train_config(args: &[&str]) -> TrainConfig {
        let mut argv = vec!["anytune", "train", "--data", "d.jsonl", "--out", "o"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Train(t) => t.config().unwrap(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn every_training_flag_reaches_the_config() {
        let d = train_config(&[]);
        assert_eq!(d, TrainConfig::default());
        let c = train_config(&[
            "--no-forgetting-check",
            "--max-ppl-increase",
            "0.2",
            "--max-kl",
            "0.3",
            "--recompute",
            "--no-shuffle",
            "--lora-rank",
            "4",
            "--steps",
            "7",
        ]);
        assert!(!c.forgetting_check);
        assert_eq!((c.max_ppl_increase, c.max_kl), (0.2, 0.3));
        assert!(c.recompute && !c.shuffle);
        assert_eq!((c.lora_rank, c.steps), (4, Some(7)));
    }
}
