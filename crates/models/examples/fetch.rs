//! Benchmark driver (used by `bench/models.sh`): downloads one URL into a
//! fresh model store with BLAKE3 verification and prints the wall time.
//!
//! `fetch <url> <models_dir> [blake3]` prints `seconds bytes`;
//! `fetch --blake3 <file>` prints the file's BLAKE3.

use std::time::Instant;

use comfyver_fs::CacheLayout;
use comfyver_models::{FetchOptions, NoReporter, fetch_models};
use comfyver_spec::lock::LockedModel;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--blake3") {
        let mut h = blake3::Hasher::new();
        h.update_reader(std::fs::File::open(&args[1])?)?;
        println!("{}", h.finalize().to_hex());
        return Ok(());
    }
    let [url, dir, rest @ ..] = args.as_slice() else {
        return Err("usage: fetch <url> <models_dir> [blake3]".into());
    };
    let layout = CacheLayout::new(dir);
    let model = LockedModel {
        source: url.clone(),
        path: "checkpoints/bench.bin".into(),
        sha256: None,
        blake3: rest.first().cloned(),
        size: None,
    };
    let start = Instant::now();
    fetch_models(&[model], &layout, &FetchOptions::default(), &NoReporter)?;
    let secs = start.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(layout.models_dir().join("checkpoints/bench.bin"))?.len();
    println!("{secs:.3} {bytes}");
    Ok(())
}
