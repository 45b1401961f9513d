//! The run report (`RUN_DIR/report.md`): loss curves, hold-out loss and task metrics base vs
//! tuned, the forgetting verdict, sample answers base vs tuned, and the exact configuration and
//! versions. Built only from the run directory's JSON files, so `anytune report RUN_DIR`
//! can rebuild it at any time.

use serde_json::Value as Json;

fn pct(v: &Json) -> String {
    v.as_f64()
        .map_or("—".into(), |x| format!("{:.1} %", 100.0 * x))
}

fn num(v: &Json, digits: usize) -> String {
    v.as_f64().map_or("—".into(), |x| format!("{x:.digits$}"))
}

/// Markdown for a run: `summary` (summary.json), `eval` (eval.json, task metrics) and
/// `forgetting` (forgetting.json) when present.
pub fn render(summary: &Json, eval: Option<&Json>, forgetting: Option<&Json>) -> String {
    let mut md =
        String::from("# anytune run report\n\n![loss curves: train and hold-out](loss.svg)\n\n");
    md += "## Hold-out\n\n| metric | base | tuned |\n| --- | --- | --- |\n";
    md += &format!(
        "| loss | {} | {} |\n",
        num(&summary["holdout_loss_before"], 5),
        num(&summary["holdout_loss_after"], 5)
    );
    let ppl = |v: &Json| v.as_f64().map_or(Json::Null, |x| Json::from(x.exp()));
    md += &format!(
        "| perplexity | {} | {} |\n",
        num(&ppl(&summary["holdout_loss_before"]), 4),
        num(&ppl(&summary["holdout_loss_after"]), 4)
    );
    if let Some(e) = eval {
        let (b, t) = (&e["base"], &e["tuned"]);
        md += &format!(
            "| exact match | {} | {} |\n",
            pct(&b["exact_match"]),
            pct(&t["exact_match"])
        );
        if b["n_json"].as_u64().unwrap_or(0) > 0 {
            md += &format!(
                "| valid JSON | {} | {} |\n",
                pct(&b["valid_json"]),
                pct(&t["valid_json"])
            );
            md += &format!(
                "| exact key set | {} | {} |\n",
                pct(&b["exact_keys"]),
                pct(&t["exact_keys"])
            );
            if let Some(fields) = b["fields"].as_object() {
                for (k, v) in fields {
                    md += &format!("| field `{k}` | {} | {} |\n", pct(v), pct(&t["fields"][k]));
                }
            }
            md += &format!(
                "| all fields correct | {} | {} |\n",
                pct(&b["all_fields"]),
                pct(&t["all_fields"])
            );
        }
    }
    if let Some(f) = forgetting {
        md += &format!(
            "\n## General ability (forgetting check)\n\n**{}**\n\nGeneral-text perplexity {} → {}; mean per-token KL(base ‖ tuned) on general prompts {}.\n\n| prompt | base | tuned |\n| --- | --- | --- |\n",
            f["verdict"].as_str().unwrap_or("—"),
            num(&f["base_ppl"], 3),
            num(&f["tuned_ppl"], 3),
            num(&f["mean_kl"], 4)
        );
        for a in f["answers"].as_array().into_iter().flatten() {
            let cell = |i: usize| {
                a[i].as_str()
                    .unwrap_or("")
                    .replace('\n', " ")
                    .replace('|', "\\|")
            };
            md += &format!("| {} | {} | {} |\n", cell(0), cell(1), cell(2));
        }
    }
    if let Some(e) = eval {
        md += "\n## Sample answers (hold-out)\n\n";
        for a in e["answers"].as_array().into_iter().flatten().take(4) {
            let prompt = a["prompt"]
                .as_array()
                .and_then(|m| m.last())
                .and_then(|m| m["content"].as_str())
                .unwrap_or("");
            md += &format!(
                "**Prompt:** {}\n\n- expected: `{}`\n- base: `{}`\n- tuned: `{}`\n\n",
                prompt.replace('\n', " | "),
                a["expected"].as_str().unwrap_or(""),
                a["base"]
                    .as_str()
                    .unwrap_or("")
                    .replace('\n', " ")
                    .replace('`', "'"),
                a["tuned"]
                    .as_str()
                    .unwrap_or("")
                    .replace('\n', " ")
                    .replace('`', "'")
            );
        }
    }
    md += &format!(
        "## Run\n\n{} steps, {} tokens in {} s ({} tokens/s); best hold-out loss {} at step {}.\n\nanytune {} (burn 0.22.1). Configuration:\n\n```json\n{}\n```\n",
        summary["steps"],
        summary["tokens"],
        num(&summary["seconds"], 1),
        num(&summary["tokens_per_second"], 1),
        num(&summary["best_holdout_loss"], 5),
        summary["best_step"],
        env!("CARGO_PKG_VERSION"),
        serde_json::to_string_pretty(&summary["config"]).unwrap_or_default()
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn report_contains_the_numbers_it_claims() {
        let summary = json!({"steps": 30, "tokens": 25024, "seconds": 217.7, "tokens_per_second": 114.9,
            "holdout_loss_before": 0.47704, "holdout_loss_after": 0.03617, "best_holdout_loss": 0.03617, "best_step": 30,
            "config": {"lr": 0.0002, "lora_rank": 8}});
        let eval = json!({"base": {"exact_match": 0.0, "n_json": 16, "valid_json": 0.0, "exact_keys": 0.0, "all_fields": 0.0,
                                    "fields": {"version": 0.0}},
                          "tuned": {"exact_match": 0.4375, "n_json": 16, "valid_json": 1.0, "exact_keys": 1.0, "all_fields": 0.4375,
                                    "fields": {"version": 1.0}},
                          "answers": [{"prompt": [{"role": "user", "content": "Package: zlib1g"}], "expected": "{\"a\": 1}",
                                       "base": "zlib is", "tuned": "{\"a\": 1}"}]});
        let forgetting = json!({"verdict": "general ability: ppl -1.9 %, KL 0.106 — WARNING", "base_ppl": 80.226, "tuned_ppl": 78.664,
                                "mean_kl": 0.106, "answers": [["What is the capital of France?", "Paris.", "Paris."]]});
        let md = render(&summary, Some(&eval), Some(&forgetting));
        for needle in [
            "| loss | 0.47704 | 0.03617 |",
            "| valid JSON | 0.0 % | 100.0 % |",
            "| field `version` | 0.0 % | 100.0 % |",
            "| all fields correct | 0.0 % | 43.8 % |",
            "**general ability: ppl -1.9 %, KL 0.106 — WARNING**",
            "perplexity 80.226 → 78.664",
            "| What is the capital of France? | Paris. | Paris. |",
            "- tuned: `{\"a\": 1}`",
            "30 steps, 25024 tokens in 217.7 s",
            "\"lora_rank\": 8",
            "![loss curves",
        ] {
            assert!(md.contains(needle), "missing {needle:?} in\n{md}");
        }
        // Without eval/forgetting files the report still renders the loss section.
        assert!(render(&summary, None, None).contains("| perplexity | 1.6113 | 1.0368 |"));
    }
}
