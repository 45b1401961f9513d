//! The `anytune` command line: flags -> library calls. Files, terminals and exit codes live
//! here; everything else is in the library.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use anytune::data::load::{describe_problems, load_text, split};
use anytune::data::{ChatTemplate, Example, Message, TokenizeOptions, TokenizedExample};
use anytune::device::{self, DeviceChoice};
use anytune::export::peft;
use anytune::generate::{SamplingOptions, generate};
use anytune::model::Llama;
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
    let mut model = Llama::load(&src, &dev.device)?;
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
    #[arg(long)]
    eval_split: Option<f64>,
    #[arg(long)]
    eval_every: Option<usize>,
    #[arg(long)]
    patience: Option<usize>,
    #[arg(long)]
    save_every: Option<usize>,
    /// Print this many base-vs-tuned generations from the hold-out set at the end
    #[arg(long, default_value_t = 2)]
    samples: usize,
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
            epochs
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

fn run_eval(a: EvalArgs) -> Result<()> {
    let s = load(&a.model, false)?;
    let o = TokenizeOptions {
        max_seq_len: a.max_seq_len,
        train_on_prompt: false,
    };
    let data = read_data(&a.data, &s, o, false)?;
    let pad = s.src.tokenizer.pad_or_eos();
    let loss = eval_loss(
        &s.model,
        &data,
        a.batch_size,
        anytune::train::loss::DEFAULT_LOGITS_CHUNK_BYTES,
        pad,
    )?;
    let n: usize = data.iter().map(|e| e.n_labels()).sum();
    println!(
        "hold-out: {} examples, {n} labelled tokens, loss {loss:.6}, perplexity {:.4}",
        data.len(),
        perplexity(loss)
    );
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

/// The prompt part of an example (everything before its last assistant answer) and that answer.
fn prompt_of(ex: &Example) -> Option<(Vec<Message>, String)> {
    match ex {
        Example::Chat(m) => {
            let last = m.iter().rposition(|x| x.role == "assistant")?;
            Some((m[..last].to_vec(), m[last].content.clone()))
        }
        _ => None,
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
    samples(&s, &model, &a, o)?;
    Ok(())
}

/// A few hold-out prompts answered by the base model and the tuned one.
fn samples(s: &Session, tuned: &Llama, a: &TrainArgs, _o: TokenizeOptions) -> Result<()> {
    if a.samples == 0 {
        return Ok(());
    }
    let Some(path) = a.eval_data.as_ref().or(Some(&a.data)) else {
        return Ok(());
    };
    let text = std::fs::read_to_string(path)?;
    let parsed = anytune::data::jsonl::parse(&text, &path.display().to_string());
    let mut tuned = tuned.clone();
    tuned.freeze_adapters();
    let mut base = tuned.clone();
    base.detach_lora();
    let opts = SamplingOptions {
        max_tokens: 96,
        ..Default::default()
    };
    for ex in parsed
        .examples
        .iter()
        .filter_map(|e| prompt_of(&e.example))
        .take(a.samples)
    {
        let ids = s.src.tokenizer.encode(&s.template.render(&ex.0, true)?)?;
        let b = generate(&base, &s.src.tokenizer, &ids, &opts, |_| {})?;
        let t = generate(&tuned, &s.src.tokenizer, &ids, &opts, |_| {})?;
        println!(
            "\n--- prompt: {}",
            ex.0.last()
                .map_or("", |m| m.content.as_str())
                .replace('\n', " | ")
        );
        println!("expected: {}", ex.1);
        println!("base:     {}", b.text.replace('\n', " "));
        println!("tuned:    {}", t.text.replace('\n', " "));
    }
    Ok(())
}
