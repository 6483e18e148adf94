//! Replays every fuzz target's corpus (`fuzz/corpus/<target>/`, seeds and
//! what the fuzzer kept) and any crash it saved (`fuzz/artifacts/`)
//! through the same entry points (`cloakroom::fuzzing`) on stable, so a
//! regression shows in the test suite without nightly. `scripts/fuzz.sh`
//! runs the fuzzers themselves.

use std::path::Path;

use cloakroom::fuzzing;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 7] = [
    ("cookie_codec", fuzzing::cookie_codec),
    ("set_cookie", fuzzing::set_cookie),
    ("jar", fuzzing::jar),
    ("upstream_h1", fuzzing::upstream_h1),
    ("config", fuzzing::config),
    ("path_route", fuzzing::path_route),
    ("h1_framing", fuzzing::h1_framing),
];

fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, target) in TARGETS {
        let corpus = inputs(&root.join("corpus").join(name));
        assert!(!corpus.is_empty(), "fuzz/corpus/{name} has no inputs");
        let artifacts = inputs(&root.join("artifacts").join(name));
        for file in corpus.iter().chain(&artifacts) {
            let data = std::fs::read(file).unwrap();
            let run = std::panic::catch_unwind(|| target(&data));
            assert!(run.is_ok(), "{name} fails on {}", file.display());
        }
        eprintln!("{name}: {} inputs", corpus.len() + artifacts.len());
    }
}

#[test]
fn every_fuzz_target_is_replayed_here() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
    let mut on_disk: Vec<String> = inputs(&dir)
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut here: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    here.sort();
    assert_eq!(on_disk, here);
}
