//! A 200 MB output uploads without being held twice: peak RSS (VmHWM) is
//! measured around uploads to gcp-storage-emulator, streamed from disk and
//! sent from memory. VmHWM belongs to the whole process, so the measurement
//! runs alone in a child run of this test binary.

use std::io::Write;
use std::time::Duration;

use comfyver_cloud::{GcsBucket, GcsConfig, Payload, RetryPolicy};
use comfyver_testkit::cloud::GcsEmulator;

const SIZE: usize = 200 << 20;
const MB: u64 = 1 << 20;

/// Peak resident set size of this process, in bytes.
fn vm_hwm() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[test]
fn a_200_mb_output_uploads_with_peak_memory_well_below_twice_its_size() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "memory::measured_alone",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("1 passed"),
        "the measurement did not run:\n{text}"
    );
}

/// Run by the test above in a process of its own.
#[test]
#[ignore = "run alone by a_200_mb_output_uploads_with_peak_memory_well_below_twice_its_size"]
fn measured_alone() {
    let emu = GcsEmulator::start("big-out");
    let bucket = GcsBucket::new(GcsConfig {
        bucket: "big-out".into(),
        prefix: String::new(),
        credentials: None,
        api_base: emu.base(),
        anonymous: true,
        public: true,
        signed_url_ttl: Duration::from_secs(60),
        retry: RetryPolicy::default(),
        // Resumable in 64 MiB chunks (the emulator is slow with many small ones).
        chunk_size: 64 << 20,
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("video.mp4");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let chunk: Vec<u8> = (0..MB as usize).map(|i| (i % 251) as u8).collect();
    for _ in 0..SIZE as u64 / MB {
        f.write_all(&chunk).unwrap();
    }
    f.flush().unwrap();
    drop(f);

    let base = vm_hwm();
    bucket
        .upload("job/video.mp4", Payload::File(&path), "video/mp4")
        .unwrap();
    let streamed = vm_hwm().saturating_sub(base);
    let meta = emu.metadata("big-out", "job/video.mp4").unwrap();
    assert_eq!(meta["size"], SIZE.to_string());
    eprintln!("streamed from disk: peak RSS grew by {} MB", streamed / MB);
    assert!(
        streamed < 32 * MB,
        "streaming a 200 MB file raised peak RSS by {} MB",
        streamed / MB
    );

    // From memory (how the handler holds outputs fetched from ComfyUI): no second copy.
    let data: Vec<u8> = std::fs::read(&path).unwrap();
    let before = vm_hwm();
    assert!(
        before >= base + SIZE as u64 * 9 / 10,
        "the buffer is resident"
    );
    bucket
        .upload("job/video2.mp4", Payload::Bytes(&data), "video/mp4")
        .unwrap();
    let total = vm_hwm().saturating_sub(base);
    eprintln!(
        "sent from memory: peak RSS grew by {} MB for a {} MB output",
        total / MB,
        SIZE as u64 / MB
    );
    assert!(
        total < SIZE as u64 + 32 * MB,
        "uploading a 200 MB buffer raised peak RSS by {} MB (a second copy?)",
        total / MB
    );
    assert_eq!(
        emu.metadata("big-out", "job/video2.mp4").unwrap()["size"],
        SIZE.to_string()
    );
}
