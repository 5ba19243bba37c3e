//! Replays every input in `fuzz/regressions/<target>/` (inputs that once crashed a fuzz target,
//! see `fuzz/README.md`) through the matching `pion_the_sky::fuzz` function. A panic fails the
//! test; every failing file is listed.
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The files of `fuzz/regressions/<target>/`, sorted; none when the directory does not exist.
fn inputs(target: &str) -> (PathBuf, Vec<PathBuf>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| {
                e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                    .path()
            })
            .filter(|p| p.is_file())
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    files.sort();
    (dir, files)
}

fn replay(target: &str, run: fn(&[u8])) {
    let (dir, files) = inputs(target);
    let mut failed = Vec::new();
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    println!(
        "fuzz regressions {target}: replayed {} input(s) from {}",
        files.len(),
        dir.display()
    );
    assert!(
        failed.is_empty(),
        "{target}: {} of {} regression input(s) panicked: {failed:#?}",
        failed.len(),
        files.len()
    );
}

#[test]
fn sdp_regressions() {
    replay("sdp", pion_the_sky::fuzz::sdp);
}

#[test]
fn ws_message_regressions() {
    replay("ws_message", pion_the_sky::fuzz::ws_message);
}
