//! ComfyUI's console output: copied line by line to a log file and kept in a
//! ring buffer of the last lines, for error messages.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

/// How many lines the ring buffer keeps.
pub(crate) const TAIL_LINES: usize = 50;

/// The log of one ComfyUI process.
#[derive(Debug)]
pub(crate) struct LogCapture {
    path: PathBuf,
    file: Arc<Mutex<File>>,
    tail: Arc<Mutex<VecDeque<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl LogCapture {
    pub(crate) fn create(path: PathBuf) -> std::io::Result<LogCapture> {
        let file = File::create(&path)?;
        Ok(LogCapture {
            path,
            file: Arc::new(Mutex::new(file)),
            tail: Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES))),
            readers: Vec::new(),
        })
    }

    /// Copies `stream` (the child's stdout or stderr) into the log until it closes.
    pub(crate) fn follow(&mut self, stream: impl Read + Send + 'static) {
        let file = Arc::clone(&self.file);
        let tail = Arc::clone(&self.tail);
        let handle = std::thread::Builder::new()
            .name("comfyui-log".into())
            .spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match reader.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    if let Ok(mut f) = file.lock() {
                        let _ = f.write_all(&buf);
                    }
                    let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                    let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                    if t.len() == TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            });
        if let Ok(h) = handle {
            self.readers.push(h);
        }
    }

    /// The last lines (at most [`TAIL_LINES`]).
    pub(crate) fn tail(&self) -> Vec<String> {
        self.tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Waits until the child's streams are closed (after it exited), so the
    /// log and the tail hold everything it wrote.
    pub(crate) fn drain(&mut self) {
        for h in self.readers.drain(..) {
            let _ = h.join();
        }
        if let Ok(mut f) = self.file.lock() {
            let _ = f.flush();
        }
    }

    /// The whole log so far.
    pub(crate) fn read_all(&self) -> String {
        std::fs::read(&self.path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

/// `YYYYmmddTHHMMSSZ` for now (UTC), for log file names.
pub(crate) fn timestamp() -> String {
    comfyver_cloud::basic_utc(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
}
