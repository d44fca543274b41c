//! The safety island as its own software item (`safety/README.md`): its
//! dependencies are an allow-list, and nothing in it logs, prints or takes a
//! lock shared with another thread.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Crates `endotower-safety` may depend on, directly or not: tokio and the
/// crates tokio's runtime, TCP and macros need, libc, thiserror and its
/// derive macro's build-time crates.
const ALLOWED: &[&str] = &[
    "endotower-safety",
    "tokio",
    "tokio-macros",
    "mio",
    "pin-project-lite",
    "socket2",
    "bytes",
    "libc",
    "thiserror",
    "thiserror-impl",
    "proc-macro2",
    "quote",
    "syn",
    "unicode-ident",
];

#[test]
fn the_safety_crate_depends_only_on_the_allow_list() {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "-p", "endotower-safety", "-e", "normal", "--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let crates: BTreeSet<String> =
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect();
    assert!(crates.contains("endotower-safety") && crates.contains("tokio"), "unexpected cargo tree output: {crates:?}");
    let extra: Vec<&String> = crates.iter().filter(|c| !ALLOWED.contains(&c.as_str())).collect();
    assert!(extra.is_empty(), "endotower-safety depends on crates outside its allow-list: {extra:?}");
}

/// What may not appear in the island's sources: logging, printing, locks.
const FORBIDDEN: &[&str] = &[
    "tracing",
    "log::",
    "println!",
    "eprintln!",
    "print!",
    "eprint!",
    "dbg!",
    "Mutex",
    "RwLock",
    "Condvar",
    ".lock()",
    "parking_lot",
    "stderr",
    "stdout",
];

#[test]
fn nothing_in_the_safety_crate_logs_prints_or_takes_a_shared_lock() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("safety/src");
    let mut found = Vec::new();
    let mut files = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&p).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for f in FORBIDDEN {
                if code.contains(f) {
                    found.push(format!("{}:{}: {f}: {}", p.file_name().unwrap().to_string_lossy(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(files >= 8, "read only {files} files of safety/src");
    assert!(found.is_empty(), "the safety crate must not log, print or lock:\n{}", found.join("\n"));
}
