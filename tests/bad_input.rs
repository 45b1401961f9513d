//! Bad training data is refused clearly: each malformed dataset gives the expected
//! `file:line: reason`, a non-zero exit, no panic, and no output directory.

mod common;

use std::process::Command;

const OK: &str =
    r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}"#;

fn cases() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let long = format!(
        r#"{{"messages":[{{"role":"user","content":"{}"}},{{"role":"assistant","content":"a"}}]}}"#,
        "word ".repeat(400)
    );
    let s = |x: &str| x.as_bytes().to_vec();
    vec![
        (
            "bad-json",
            s(&format!("{OK}\n{{\"messages\": [\n")),
            ":2: invalid JSON",
        ),
        (
            "wrong-role",
            s(r#"{"messages":[{"role":"user","content":"q"},{"role":"bot","content":"a"}]}"#),
            ":1: message 1: unknown role \"bot\"",
        ),
        (
            "missing-content",
            s(r#"{"messages":[{"role":"user"},{"role":"assistant","content":"a"}]}"#),
            ":1: message 0 (user): missing \"content\"",
        ),
        (
            "no-assistant",
            s(&format!(
                "{OK}\n{OK}\n{}",
                r#"{"messages":[{"role":"user","content":"q"}]}"#
            )),
            ":3: no assistant turn",
        ),
        ("empty-file", s(""), ": no examples (the file is empty)"),
        (
            "blank-lines-only",
            s("\n  \n\r\n"),
            ": no examples (the file is empty)",
        ),
        ("over-long", s(&format!("{OK}\n{long}")), ":2: "),
        (
            "content-number",
            s(r#"{"messages":[{"role":"user","content":42},{"role":"assistant","content":"a"}]}"#),
            ":1: message 0 (user): \"content\" must be a string, found a number",
        ),
        (
            "messages-string",
            s(r#"{"messages":"hello"}"#),
            ":1: \"messages\" must be an array, found a string",
        ),
        (
            "empty-content",
            s(
                r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"  "}]}"#,
            ),
            ":1: message 1 (assistant): \"content\" is empty",
        ),
        (
            "array-line",
            s(&format!("{OK}\n[1, 2]")),
            ":2: expected a JSON object, found an array",
        ),
        (
            "mixed-formats",
            s(&format!("{OK}\n{{\"text\": \"plain\"}}")),
            ":2: text ({\"text\": ...}) example in a chat",
        ),
        (
            "unknown-keys",
            s(r#"{"question":"q","answer":"a"}"#),
            ":1: no \"messages\", \"prompt\"/\"completion\" or \"text\" key",
        ),
        (
            "prompt-only",
            s(r#"{"prompt":"q"}"#),
            ":1: missing \"completion\"",
        ),
        (
            "bom-crlf-line-numbers",
            [
                b"\xEF\xBB\xBF".to_vec(),
                s(&format!("{OK}\r\n{{oops}}\r\n")),
            ]
            .concat(),
            ":2: invalid JSON",
        ),
        ("not-utf8", vec![b'{', 0xff, 0xfe, b'}'], ": not UTF-8 text"),
    ]
}

#[test]
fn malformed_datasets_are_refused_with_file_and_line() {
    let model = common::model_path();
    let dir = std::env::temp_dir().join(format!("anytune-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let table = cases();
    assert!(table.len() >= 12);
    for (name, bytes, want) in table {
        let file = dir.join(if name == "empty-file" {
            "empty.jsonl".to_string()
        } else {
            format!("{name}.jsonl")
        });
        std::fs::write(&file, &bytes).unwrap();
        let out = dir.join(format!("out-{name}"));
        let r = Command::new(env!("CARGO_BIN_EXE_anytune"))
            .args([
                "train",
                "--device",
                "cpu",
                "--max-seq-len",
                "256",
                "--steps",
                "1",
                "--model",
            ])
            .arg(&model)
            .arg("--data")
            .arg(&file)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(
            r.status.code(),
            Some(1),
            "{name}: exit status {:?}\n{err}",
            r.status
        );
        // Every message is `FILE:LINE: reason` (or `FILE: reason` for the whole file).
        let located = format!("{}{want}", file.display());
        assert!(
            err.contains(&located),
            "{name}: expected {located:?} in:\n{err}"
        );
        if name == "over-long" {
            assert!(
                err.contains("tokens, longer than --max-seq-len 256"),
                "{err}"
            );
        }
        assert!(!err.contains("panicked"), "{name}: panicked:\n{err}");
        assert!(!out.exists(), "{name}: {} was created", out.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn skip_invalid_lists_problems_and_counts_them() {
    let model = common::model_path();
    let dir = std::env::temp_dir().join(format!("anytune-skip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("d.jsonl");
    let bad: Vec<String> = (0..25).map(|i| format!("{{\"messages\": {i}}}")).collect();
    std::fs::write(&file, format!("{}\n{OK}\n", bad.join("\n"))).unwrap();
    let r = Command::new(env!("CARGO_BIN_EXE_anytune"))
        .args(["train", "--device", "cpu", "--steps", "1", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&file)
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1));
    assert!(err.contains("25 problem(s)"), "{err}");
    assert!(
        err.contains("d.jsonl:20: \"messages\" must be an array, found a number"),
        "{err}"
    );
    assert!(err.contains("... and 5 more"), "{err}");
    assert!(!err.contains("d.jsonl:21:"), "only 20 are listed:\n{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
