//! docs/OPERATIONS.md documents every flag of `matcher serve` (global flags included) and of
//! `tg-gateway` with its environment variable and default, as the binaries report them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed expectation is the report

use lookalike_e2e::procs::{binary, repo_root};
use std::process::Command;

/// (flag, env, default) for every option in a clap `--help` text.
fn options(help: &str) -> Vec<(String, Option<String>, Option<String>)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        let flag = t.strip_prefix("-h, ").or_else(|| t.strip_prefix("-V, ")).unwrap_or(t);
        if line.starts_with("  ") && flag.starts_with("--") {
            let name = flag.split([' ', '=', '<']).next().unwrap_or_default().to_string();
            out.push((name, String::new()));
        } else if let Some(last) = out.last_mut() {
            last.1.push_str(line);
            last.1.push(' ');
        }
    }
    let field = |text: &str, key: &str| {
        let start = text.find(key)? + key.len();
        let end = text[start..].find(']')? + start;
        Some(text[start..end].trim_end_matches('=').to_string())
    };
    out.into_iter()
        .filter(|(name, _)| name != "--help" && name != "--version")
        .map(|(name, text)| (name, field(&text, "[env: "), field(&text, "[default: ")))
        .collect()
}

/// Checks the binary's options against the tables under `heading` (up to the next heading
/// of the same or a higher level).
fn check(binary_name: &str, args: &[&str], heading: &str) {
    let out = Command::new(binary(binary_name).unwrap()).args(args).output().expect("run the binary");
    let help = String::from_utf8_lossy(&out.stdout);
    let all = std::fs::read_to_string(repo_root().join("docs/OPERATIONS.md")).expect("docs");
    let level = heading.split(' ').next().unwrap_or("#").len();
    let ends_section = |l: &str| l.starts_with('#') && l.split(' ').next().is_some_and(|h| h.len() <= level);
    let docs: Vec<&str> =
        all.lines().skip_while(|l| !l.starts_with(heading)).skip(1).take_while(|l| !ends_section(l)).collect();
    assert!(!docs.is_empty(), "no '{heading}' section in docs/OPERATIONS.md");
    let opts = options(&help);
    assert!(opts.len() >= 15, "parsed too few options from:\n{help}");
    let mut problems = Vec::new();
    for (flag, env, default) in opts {
        let Some(row) = docs.iter().find(|l| l.starts_with('|') && l.contains(&format!("`{flag}`"))) else {
            problems.push(format!("{flag}: no row in docs/OPERATIONS.md"));
            continue;
        };
        if let Some(env) = env.filter(|e| !row.contains(&format!("`{e}`"))) {
            problems.push(format!("{flag}: variable {env} missing from its row"));
        }
        if let Some(d) = default.filter(|d| !row.contains(d.as_str())) {
            problems.push(format!("{flag}: default {d} missing from its row"));
        }
    }
    assert!(problems.is_empty(), "{binary_name}: docs/OPERATIONS.md is out of date:\n{}", problems.join("\n"));
}

#[test]
fn every_matcher_serve_flag_is_documented() {
    check("matcher", &["serve", "--help"], "### matcher");
}

#[test]
fn every_gateway_flag_is_documented() {
    check("tg-gateway", &["--help"], "### gateway");
}
