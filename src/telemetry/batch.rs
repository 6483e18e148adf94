//! The log writer: every formatted line is appended to one shared buffer,
//! and a dedicated thread writes the buffer to stdout in batches.
//!
//! With the access log on (the default, SPEC §11) there is a line per
//! request. A channel to a writer thread (tracing-appender's) cost a wake-up
//! and a `write(2)` per line, on the proxy's own core when it is pinned to
//! one. Here the first line into an empty buffer wakes the writer, which
//! waits [`GATHER`] for more and then writes everything in one call: one
//! wake-up and one write per batch (docs/performance.md).
//!
//! Nothing is dropped: above [`CAP`] unwritten bytes a logging thread waits
//! for the writer (the same back-pressure as a full blocking channel). A
//! line waits at most [`GATHER`] plus the previous batch's write before it
//! reaches stdout; [`Guard`] writes what is left when it is dropped.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long the writer gathers lines after the first of a batch.
const GATHER: Duration = Duration::from_millis(10);
/// Unwritten bytes that make the writer start at once.
const HIGH: usize = 64 * 1024;
/// Unwritten bytes above which a logging thread waits for the writer.
const CAP: usize = 1024 * 1024;

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when a batch starts or passes [`HIGH`], and on close.
    ready: Condvar,
    /// Signalled when the writer has taken the pending bytes.
    room: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock cannot leave `Pending` half
        // updated (an append or a swap), so a poisoned lock is still good.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The [`MakeWriter`] the subscriber formats into.
#[derive(Clone)]
pub struct Lines(Arc<Shared>);

/// Stops the writer thread, after it has written every pending line.
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the writer thread over `out`.
pub fn start<W: Write + Send + 'static>(out: W) -> (Lines, Guard) {
    let shared = Arc::new(Shared::default());
    let writer = shared.clone();
    // Without its writer every logging thread would wait at [`CAP`] for
    // good: a process that cannot start one thread does not start at all.
    let thread = std::thread::Builder::new()
        .name("cloakroom-log".into())
        .spawn(move || write_batches(&writer, out))
        .expect("cannot start the log writer thread");
    let lines = Lines(shared.clone());
    let thread = Some(thread);
    (lines, Guard { shared, thread })
}

fn write_batches<W: Write>(shared: &Shared, mut out: W) {
    let mut batch = Vec::new();
    loop {
        let mut pending = shared.lock();
        while pending.bytes.is_empty() && !pending.closed {
            pending = shared
                .ready
                .wait(pending)
                .unwrap_or_else(|e| e.into_inner());
        }
        if !pending.closed && pending.bytes.len() < HIGH {
            pending = shared
                .ready
                .wait_timeout(pending, GATHER)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let closed = pending.closed;
        std::mem::swap(&mut batch, &mut pending.bytes);
        drop(pending);
        shared.room.notify_all();
        // A failed write loses that batch, never the process: logging has
        // no one to report to.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        if batch.capacity() > CAP {
            batch.shrink_to(HIGH);
        }
        if closed && shared.lock().bytes.is_empty() {
            return;
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One line's writer: it appends to the pending bytes.
pub struct Sink<'a>(&'a Shared);

impl Write for Sink<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut pending = self.0.lock();
        while pending.bytes.len() >= CAP && !pending.closed {
            pending = self.0.room.wait(pending).unwrap_or_else(|e| e.into_inner());
        }
        // Closed: the writer is gone or going, and nothing would bound the
        // buffer; a line logged this late is dropped.
        if pending.closed {
            return Ok(line.len());
        }
        let before = pending.bytes.len();
        pending.bytes.extend_from_slice(line);
        let after = pending.bytes.len();
        drop(pending);
        if before == 0 || (before < HIGH && after >= HIGH) {
            self.0.ready.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Sink<'a>;

    fn make_writer(&'a self) -> Sink<'a> {
        Sink(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer the test can read back, counting the writes it was given.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Recorder {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let mut r = self.0.lock().unwrap();
            r.0.extend_from_slice(b);
            r.1 += 1;
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_in_order_in_few_writes_and_the_guard_drains() {
        let out = Recorder::default();
        let (lines, guard) = start(out.clone());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let lines = lines.clone();
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        let line = format!("t{t} line {i}\n");
                        lines.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let (bytes, writes) = std::mem::take(&mut *out.0.lock().unwrap());
        let text = String::from_utf8(bytes).unwrap();
        for t in 0..4 {
            let mine: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("t{t} ")))
                .collect();
            let want: Vec<String> = (0..5000).map(|i| format!("t{t} line {i}")).collect();
            assert_eq!(mine, want, "thread {t}'s lines, all and in order");
        }
        assert_eq!(text.lines().count(), 20_000);
        assert!(writes < 2_000, "{writes} writes for 20,000 lines");
    }

    #[test]
    fn a_lone_line_is_written_without_waiting_for_more() {
        let out = Recorder::default();
        let (lines, _guard) = start(out.clone());
        lines.make_writer().write_all(b"one\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while out.0.lock().unwrap().0.is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(out.0.lock().unwrap().0, b"one\n");
    }

    #[test]
    fn a_full_buffer_holds_the_logging_thread_back_not_its_line() {
        /// A slow stdout: every write takes 20 ms.
        struct Slow(Recorder);
        impl Write for Slow {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                std::thread::sleep(Duration::from_millis(20));
                self.0.write(b)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let out = Recorder::default();
        let (lines, guard) = start(Slow(out.clone()));
        let line = vec![b'x'; 1023];
        for _ in 0..4 * CAP / 1024 {
            let mut w = lines.make_writer();
            w.write_all(&line).unwrap();
            w.write_all(b"\n").unwrap();
            assert!(lines.0.lock().bytes.len() <= CAP + 1024, "bounded");
        }
        drop(guard);
        assert_eq!(out.0.lock().unwrap().0.len(), 4 * CAP);
    }
}
