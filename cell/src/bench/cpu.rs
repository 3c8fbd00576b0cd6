//! CPU time of this process's threads, from Linux's `/proc/self/task/*/schedstat` (nanoseconds
//! on a CPU), grouped by thread name. A benchmark divides it by its operations: CPU per
//! operation moves far less than throughput when a neighbour shares this machine's two cores,
//! so a change to the hot path can be judged by it. The load generator runs in this process,
//! so its threads (tokio's workers) are counted too.

use std::collections::BTreeMap;
use std::time::Duration;

/// A thread's time on a CPU: the first field of its `schedstat`, in nanoseconds.
fn on_cpu(schedstat: &std::path::Path) -> Option<Duration> {
    let stat = std::fs::read_to_string(schedstat).ok()?;
    stat.split_whitespace().next()?.parse().ok().map(Duration::from_nanos)
}

/// CPU time per live thread, by thread id.
pub struct CpuSnapshot(BTreeMap<u32, (String, Duration)>);

impl CpuSnapshot {
    /// Reads every thread of this process; empty where `/proc` has no schedstat.
    pub fn now() -> CpuSnapshot {
        let mut threads = BTreeMap::new();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return CpuSnapshot(threads) };
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else { continue };
            let path = task.path();
            // A thread may end between the listing and these reads: it is then left out.
            let (Ok(name), Some(cpu)) = (std::fs::read_to_string(path.join("comm")), on_cpu(&path.join("schedstat")))
            else {
                continue;
            };
            threads.insert(tid, (name.trim().to_owned(), cpu));
        }
        CpuSnapshot(threads)
    }

    /// CPU time since `earlier`, per thread name, most first. A thread that ended in between is
    /// missing (its time is lost); one that started counts from zero.
    pub fn since(&self, earlier: &CpuSnapshot) -> CpuUse {
        let mut by_name: BTreeMap<&str, Duration> = BTreeMap::new();
        for (tid, (name, now)) in &self.0 {
            let before = earlier.0.get(tid).map_or(Duration::ZERO, |(_, t)| *t);
            *by_name.entry(name).or_default() += now.saturating_sub(before);
        }
        let mut threads: Vec<(String, Duration)> = by_name.into_iter().map(|(n, t)| (n.to_owned(), t)).collect();
        threads.sort_by_key(|t| std::cmp::Reverse(t.1));
        CpuUse { threads }
    }
}

/// CPU time used during a phase, per thread name.
#[derive(Default)]
pub struct CpuUse {
    threads: Vec<(String, Duration)>,
}

impl CpuUse {
    pub fn total(&self) -> Duration {
        self.threads.iter().map(|(_, t)| *t).sum()
    }

    /// Microseconds of CPU per operation, in all; `None` when nothing was measured.
    pub fn us_per_op(&self, ops: u64) -> Option<f64> {
        let total = self.total();
        (ops > 0 && !total.is_zero()).then(|| total.as_secs_f64() * 1e6 / ops as f64)
    }

    /// Microseconds of CPU per operation of the threads whose name `is_part` picks.
    pub fn us_per_op_of(&self, ops: u64, is_part: impl Fn(&str) -> bool) -> Option<f64> {
        let part: Duration = self.threads.iter().filter(|(n, _)| is_part(n)).map(|(_, t)| *t).sum();
        self.us_per_op(ops).map(|_| part.as_secs_f64() * 1e6 / ops as f64)
    }

    /// `65.3 us/op (ledger-writer 30.1, ledger-commit 22.0, ...)`: the total, then each thread name.
    pub fn breakdown(&self, ops: u64) -> String {
        let Some(total) = self.us_per_op(ops) else { return "not measured (no /proc schedstat)".into() };
        let per = |t: &Duration| t.as_secs_f64() * 1e6 / ops as f64;
        let parts: Vec<String> =
            self.threads.iter().filter(|(_, t)| per(t) >= 0.1).map(|(n, t)| format!("{n} {:.1}", per(t))).collect();
        format!("{total:.1} us/op ({})", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_cpu_time() -> Option<Duration> {
        on_cpu(std::path::Path::new("/proc/thread-self/schedstat"))
    }

    #[test]
    fn a_busy_thread_shows_its_cpu_time_under_its_name() {
        if own_cpu_time().is_none() {
            return; // not Linux, or no schedstat: the benches print no CPU figures there
        }
        let before = CpuSnapshot::now();
        let (spun, spun_rx) = std::sync::mpsc::channel();
        let busy = std::thread::Builder::new()
            .name("cpu-test-busy".into())
            .spawn(move || {
                // Spin until this thread has itself used 30 ms of CPU, however loaded the machine.
                let start = own_cpu_time().expect("schedstat");
                while own_cpu_time().expect("schedstat") - start < Duration::from_millis(30) {
                    std::hint::spin_loop();
                }
                spun.send(()).expect("send");
                // Stay alive until the snapshot is taken: an ended thread is not counted.
                std::thread::park();
            })
            .expect("spawn");
        spun_rx.recv().expect("the busy thread spun");
        let used = CpuSnapshot::now().since(&before);
        busy.thread().unpark();
        busy.join().expect("join");
        let busy_time = used.threads.iter().find(|(n, _)| n == "cpu-test-busy").map(|(_, t)| *t);
        let busy_time = busy_time.expect("the busy thread is listed");
        assert!(busy_time >= Duration::from_millis(30), "30 ms of spinning counted as {busy_time:?}");
        assert!(used.total() >= busy_time);
        assert!(used.breakdown(10).contains("cpu-test-busy"));
        assert_eq!(CpuUse::default().us_per_op(10), None);
        let busy_us = busy_time.as_secs_f64() * 1e6 / 10.0;
        assert_eq!(used.us_per_op_of(10, |n| n == "cpu-test-busy"), Some(busy_us));
        assert_eq!(used.us_per_op_of(10, |_| false), Some(0.0));
    }
}
