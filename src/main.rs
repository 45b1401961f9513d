//! The `anytune` command line: flags -> library calls. Files, terminals and exit codes live
//! here; everything else is in the library.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use anytune::data::{ChatTemplate, Message};
use anytune::device::{self, DeviceChoice};
use anytune::generate::{SamplingOptions, generate};
use anytune::model::Llama;
use anytune::weights::ModelSource;

/// The demo model that `scripts/fetch-model.sh` fetches.
const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Parser)]
#[command(name = "anytune", version, about = "LoRA fine-tuning for Llama-class models on any GPU")]
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
}

#[derive(Args)]
struct ModelArgs {
    /// A .gguf file or a Hugging Face model directory [default: $ANYTUNE_MODEL or the demo model]
    #[arg(long)]
    model: Option<PathBuf>,
    /// auto | vulkan | metal | dx12 | cpu
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
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
        }
    }
}

/// A loaded model ready to talk.
struct Session {
    src: ModelSource,
    model: Llama,
    template: ChatTemplate,
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
    let model = Llama::load(&src, &dev.device)?;
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
    Ok(Session { src, model, template })
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
    let mut out = std::io::stdout();
    let g = generate(&s.model, &s.src.tokenizer, &ids, &a.sampling.options(), |piece| {
        let _ = out.write_all(piece.as_bytes());
        let _ = out.flush();
    })?;
    println!();
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
    let mut msgs: Vec<Message> = a.system.iter().map(|sys| Message::new("system", sys)).collect();
    let base = msgs.clone();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
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
        let g = generate(&s.model, &s.src.tokenizer, &ids, &a.sampling.options(), |piece| {
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        })?;
        println!();
        eprintln!("[{} tokens, {:.2} tokens/s]", g.ids.len(), g.tokens_per_second());
        msgs.push(Message::new("assistant", &g.text));
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Generate(a) => run_generate(a),
        Command::Chat(a) => run_chat(a),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
