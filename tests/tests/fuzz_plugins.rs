//! Hostile plugins, generated: random valid code from `wasm-smith` wrapped in
//! components, and mutations of real plugins (bit flips, overwritten bytes,
//! truncation, duplicated and deleted ranges, huge LEB counts), through
//! admission, validation, compilation and — when accepted — a run under tight
//! limits. Every case must end as a refusal with a code or as a run with an
//! outcome: no panic. The case count is `TASKHOST_FUZZ_CASES` (10,000 by
//! default; CI runs the default), the seed `TASKHOST_FUZZ_SEED`.

use arbitrary::Unstructured;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};
use taskhost_runtime::{Limits, RunRequest, Runtime, RuntimeConfig};
use wasm_encoder::{Component, ComponentSectionId, RawSection};

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A component holding one random, valid core module.
fn smith_component(rng: &mut Rng) -> Vec<u8> {
    let entropy: Vec<u8> = (0..2048).map(|_| rng.next() as u8).collect();
    let mut u = Unstructured::new(&entropy);
    let config = wasm_smith::Config {
        max_funcs: 20,
        max_instructions: 300,
        max_memory32_bytes: 1 << 20,
        // What the host's engine accepts, so that the code reaches the compiler.
        exceptions_enabled: false,
        gc_enabled: false,
        compact_imports_enabled: false,
        threads_enabled: false,
        wide_arithmetic_enabled: false,
        relaxed_simd_enabled: false,
        tail_call_enabled: false,
        ..wasm_smith::Config::default()
    };
    let module =
        wasm_smith::Module::new(config, &mut u).map_or_else(|_| Vec::new(), |m| m.to_bytes());
    let mut component = Component::new();
    component.section(&RawSection {
        id: ComponentSectionId::CoreModule as u8,
        data: &module,
    });
    component.finish()
}

/// `base` with one to four mutations.
fn mutate(base: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut bytes = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.below(bytes.len());
        match rng.below(6) {
            0 => bytes[at] ^= 1 << rng.below(8),
            1 => bytes[at] = rng.next() as u8,
            2 => bytes.truncate(at),
            3 => {
                let end = (at + 1 + rng.below(64)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                let to = rng.below(bytes.len());
                bytes.splice(to..to, copy);
            }
            4 => {
                bytes.splice(at..at, [0xff, 0xff, 0xff, 0xff, 0x0f]);
            }
            _ => {
                let end = (at + 1 + rng.below(64)).min(bytes.len());
                bytes.drain(at..end);
            }
        }
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_and_mutated_plugins_are_refused_with_a_code_or_run() {
    let cases: usize = std::env::var("TASKHOST_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let seed: u64 = std::env::var("TASKHOST_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x7a5c_4057);
    let runtime = Runtime::new(RuntimeConfig {
        max_concurrent_runs: 4,
        max_memory_bytes: 64 << 20,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let mut rng = Rng(seed | 1);
    let corpus = [
        taskhost_tests::plugin("hello"),
        taskhost_tests::plugin("test-kv"),
        smith_component(&mut rng),
    ];
    let limits = Limits {
        fuel: 10_000_000,
        timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let mut refused: BTreeMap<&'static str, usize> = BTreeMap::new();
    let (mut ran, mut panics, mut slowest) = (0, Vec::new(), Duration::ZERO);
    let started = Instant::now();
    for case in 0..cases {
        let bytes = if case % 4 == 0 {
            smith_component(&mut rng)
        } else {
            mutate(&corpus[rng.below(corpus.len())], &mut rng)
        };
        let t = Instant::now();
        match std::panic::catch_unwind(AssertUnwindSafe(|| runtime.prepare(&bytes))) {
            Ok(Ok(plugin)) => {
                let mut request = RunRequest::new(br#"{"name":"fuzz"}"#.to_vec());
                request.limits = limits;
                let outcome = runtime.run(&plugin, request).await;
                assert!(!outcome.status.as_str().is_empty());
                ran += 1;
            }
            Ok(Err(invalid)) => *refused.entry(invalid.code().as_str()).or_default() += 1,
            Err(_) => panics.push(case),
        }
        slowest = slowest.max(t.elapsed());
    }
    println!(
        "fuzz: {cases} cases (seed {seed}) in {:.1}s: {ran} ran, refused {refused:?}, slowest case {:.0}ms, panics {}",
        started.elapsed().as_secs_f64(),
        slowest.as_secs_f64() * 1e3,
        panics.len()
    );
    assert!(
        panics.is_empty(),
        "panics in cases {panics:?} (seed {seed})"
    );
}
