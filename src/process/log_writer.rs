//! The logging thread's writer: lines gather in one buffer and a thread writes them out in batches,
//! woken once per interval rather than once per line.
//!
//! The relay logs a line per webhook. A channel to a logging thread (`tracing-appender`) wakes that
//! thread for nearly every line at 1 000–16 000 lines/s (a futex wake and a context switch, several
//! µs of an event's budget). Here the first line into an empty buffer wakes the thread, which then
//! waits out [`INTERVAL`] so the lines of that time go out in one `write(2)`; a warning or an
//! error, or a buffer past [`WRITE_AT`], is written at once. Past [`MAX_PENDING`] (stdout blocked)
//! lines are dropped and counted rather than stalling the workers that answer Whaticket.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How long the thread lets lines gather after the first one, at most.
const INTERVAL: Duration = Duration::from_millis(100);
/// Bytes gathered that are written without waiting out the interval.
const WRITE_AT: usize = 64 * 1024;
/// Bytes waiting at most; beyond, lines are dropped (a few thousand lines).
const MAX_PENDING: usize = 2 * 1024 * 1024;
/// The thread's own buffer is shrunk back to this after a burst.
const KEEP_CAPACITY: usize = 256 * 1024;
/// How long dropping the guard waits for the last lines to be written: a blocked stdout must
/// not hold up the exit (after a storage failure the supervisor has to restart us).
const CLOSE_WAIT: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    /// A warning or error is waiting: write without waiting out the interval.
    urgent: bool,
    dropped: u64,
    closed: bool,
    /// Set by the thread as it returns, having written out what was waiting.
    finished: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves only bytes behind: keep logging.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a notification, or until `deadline` when there is one.
    fn wait<'a>(
        &self,
        pending: MutexGuard<'a, Pending>,
        deadline: Option<Instant>,
    ) -> MutexGuard<'a, Pending> {
        match deadline {
            None => self
                .wake
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                self.wake
                    .wait_timeout(pending, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        }
    }
}

/// The `MakeWriter` handed to the subscriber.
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// Stops the logging thread when dropped, after it wrote out what is waiting.
#[must_use = "dropping the guard stops the logging thread"]
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the logging thread writing to `sink` (stdout, in the relay).
pub fn spawn(sink: impl Write + Send + 'static) -> std::io::Result<(BatchWriter, Guard)> {
    spawn_with(sink, INTERVAL)
}

/// As [`spawn`], with lines gathering for `interval` (tests use a long one, so that what they
/// check does not hang on the machine's timing).
fn spawn_with(
    sink: impl Write + Send + 'static,
    interval: Duration,
) -> std::io::Result<(BatchWriter, Guard)> {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending::default()),
        wake: Condvar::new(),
    });
    let thread = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("logging".into())
            .spawn(move || run(&shared, sink, interval))?
    };
    Ok((
        BatchWriter {
            shared: Arc::clone(&shared),
        },
        Guard {
            shared,
            thread: Some(thread),
        },
    ))
}

fn run(shared: &Shared, mut sink: impl Write, interval: Duration) {
    let mut out = Vec::new();
    loop {
        let (dropped, closed) = {
            let mut pending = shared.lock();
            while pending.buf.is_empty() && !pending.closed {
                pending = shared.wait(pending, None);
            }
            let deadline = Instant::now() + interval;
            while !pending.urgent
                && !pending.closed
                && pending.buf.len() < WRITE_AT
                && Instant::now() < deadline
            {
                pending = shared.wait(pending, Some(deadline));
            }
            std::mem::swap(&mut out, &mut pending.buf);
            pending.urgent = false;
            (std::mem::take(&mut pending.dropped), pending.closed)
        };
        if dropped > 0 {
            // On stderr: a plain sentence in a stream of JSON lines would break their readers.
            eprintln!("whaticket-relay: {dropped} log lines dropped: stdout was not keeping up");
        }
        // A failed write (closed stdout) has nowhere to be reported; the lines are gone either way.
        let _ = sink.write_all(&out).and_then(|()| sink.flush());
        out.clear();
        if out.capacity() > KEEP_CAPACITY {
            out.shrink_to(KEEP_CAPACITY);
        }
        if closed {
            let mut pending = shared.lock();
            if pending.buf.is_empty() {
                pending.finished = true;
                shared.wake.notify_all();
                return;
            }
        }
    }
}

impl Drop for Guard {
    /// Waits up to [`CLOSE_WAIT`] for the thread to write out what is waiting; a thread stuck
    /// on a blocked stdout is left behind.
    fn drop(&mut self) {
        let deadline = Instant::now() + CLOSE_WAIT;
        let mut pending = self.shared.lock();
        pending.closed = true;
        self.shared.wake.notify_all();
        while !pending.finished && Instant::now() < deadline {
            pending = self.shared.wait(pending, Some(deadline));
        }
        let finished = pending.finished;
        drop(pending);
        if let (true, Some(thread)) = (finished, self.thread.take()) {
            let _ = thread.join();
        }
    }
}

/// One formatted line's writer: the subscriber formats a whole line, then writes it in one call.
pub struct LineWriter<'a> {
    shared: &'a Shared,
    urgent: bool,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let wake = {
            let mut pending = self.shared.lock();
            if pending.closed || pending.buf.len() + line.len() > MAX_PENDING {
                pending.dropped += 1;
                return Ok(line.len());
            }
            let first = pending.buf.is_empty();
            let below = pending.buf.len() < WRITE_AT;
            pending.buf.extend_from_slice(line);
            pending.urgent |= self.urgent;
            // Only these need the thread: otherwise it is waiting out its interval already.
            first || self.urgent || (below && pending.buf.len() >= WRITE_AT)
        };
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// Longer than any test waits: lines go out only when a test makes them.
    const LONG: Duration = Duration::from_secs(60);

    /// A sink the test can read while the logging thread writes to it.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn line(writer: &BatchWriter, urgent: bool, text: &str) {
        let mut line = LineWriter {
            shared: &writer.shared,
            urgent,
        };
        line.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn lines_come_out_in_order_and_dropping_the_guard_writes_the_rest() {
        let sink = Sink::default();
        let (writer, guard) = spawn_with(sink.clone(), LONG).unwrap();
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        for i in 0..1000 {
            line(&writer, false, &format!("line {i}\n"));
        }
        drop(guard);
        assert_eq!(sink.text(), expected);
    }

    #[test]
    fn ordinary_lines_wait_out_the_interval_and_warnings_do_not() {
        let sink = Sink::default();
        let (writer, guard) = spawn_with(sink.clone(), LONG).unwrap();
        line(&writer, false, "info\n");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(sink.text(), "", "an info line is written with its batch");
        line(&writer, true, "warn\n");
        let until = Instant::now() + LONG / 2;
        while sink.text().is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            sink.text(),
            "info\nwarn\n",
            "a warning takes its batch out without waiting out the interval"
        );
        line(&writer, false, "later\n");
        drop(guard);
        assert_eq!(sink.text(), "info\nwarn\nlater\n");
    }

    #[test]
    fn the_default_interval_writes_a_lone_line_soon() {
        let sink = Sink::default();
        let (writer, _guard) = spawn(sink.clone()).unwrap();
        line(&writer, false, "info\n");
        let until = Instant::now() + Duration::from_secs(5);
        while sink.text().is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(sink.text(), "info\n");
    }

    #[test]
    fn a_blocked_sink_drops_lines_past_the_cap_instead_of_blocking() {
        // The thread is stuck writing the first batch until the gate opens.
        struct Gate(Arc<Mutex<()>>, Arc<AtomicBool>, Sink);
        impl Write for Gate {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.1.store(true, Ordering::Release);
                let _open = self.0.lock().unwrap();
                self.2.write(buf)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let gate = Arc::new(Mutex::new(()));
        let closed = gate.lock().unwrap();
        let entered = Arc::new(AtomicBool::new(false));
        let sink = Sink::default();
        let gated = Gate(Arc::clone(&gate), Arc::clone(&entered), sink.clone());
        let (writer, guard) = spawn_with(gated, LONG).unwrap();
        line(&writer, true, "first\n");
        while !entered.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let big = "x".repeat(1023) + "\n";
        let lines = MAX_PENDING / big.len() + 100;
        for _ in 0..lines {
            line(&writer, false, &big);
        }
        assert!(writer.shared.lock().dropped >= 100);
        assert!(writer.shared.lock().buf.len() <= MAX_PENDING);
        drop(closed);
        drop(guard);
        let written = sink.text();
        assert!(written.starts_with("first\n"));
        assert_eq!(written.lines().count(), 1 + MAX_PENDING / big.len());
    }

    #[test]
    fn dropping_the_guard_does_not_wait_on_a_blocked_sink_for_ever() {
        struct Stuck(Arc<AtomicBool>);
        impl Write for Stuck {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                self.0.store(true, Ordering::Release);
                // A stdout nobody reads: the write never returns within the test.
                std::thread::sleep(Duration::from_secs(3600));
                Ok(0)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let entered = Arc::new(AtomicBool::new(false));
        let (writer, guard) = spawn_with(Stuck(Arc::clone(&entered)), LONG).unwrap();
        line(&writer, true, "stuck\n");
        while !entered.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let started = Instant::now();
        drop(guard);
        let waited = started.elapsed();
        assert!(waited >= CLOSE_WAIT, "gave up after {waited:?}");
        assert!(waited < CLOSE_WAIT * 5, "waited {waited:?}");
    }
}
