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
pub const TAIL_LINES: usize = 50;

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
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn dates_are_converted() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}
