//! The process's memory: its ceiling, the share photos may use, and giving memory back.
//!
//! Every photo reserves its estimated peak (`lookalike_engine::cost`, from the header)
//! before a worker decodes it, and waits while the photos in flight hold the rest. A photo
//! that could never fit is refused at once. The ceiling defaults to the container's cgroup
//! limit, so no input and no mix of inputs can push the process into an OOM kill.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// Share of the ceiling the process plans to use; the rest is slack for what is not
/// reserved (gRPC buffers, allocator fragmentation, the kernel's accounting).
const PLANNED_SHARE: f64 = 0.9;

/// The memory limit of the cgroup this process runs in (cgroup v2, then v1), if any.
pub fn cgroup_limit() -> Option<u64> {
    let v2 = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok();
    let v1 = || std::fs::read_to_string("/sys/fs/cgroup/memory/memory.limit_in_bytes").ok();
    let raw = v2.or_else(v1)?;
    let limit: u64 = raw.trim().parse().ok()?; // "max" (no limit) does not parse
                                               // cgroup v1 reports "no limit" as a huge page-rounded number.
    (limit < (1 << 60)).then_some(limit)
}

/// Resident memory of this process now (VmRSS), in bytes.
pub fn resident_bytes() -> Option<u64> {
    status_kb("VmRSS:").map(|kb| kb * 1024)
}

fn status_kb(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// The ceiling when the operator sets none: the planned share of the cgroup's limit.
pub fn default_ceiling() -> Option<u64> {
    cgroup_limit().map(|limit| (limit as f64 * PLANNED_SHARE) as u64)
}

/// How much photos in flight may hold: the `ceiling`, less what the process holds at rest
/// and room to load a gallery as large as `gallery_bytes` beside the serving one. `None`
/// (no ceiling) means unlimited.
pub fn photo_budget(ceiling: Option<u64>, resting: u64, gallery_bytes: u64) -> Option<u64> {
    Some(ceiling?.saturating_sub(resting).saturating_sub(gallery_bytes))
}

/// Bytes that photos in flight may reserve, shared by the workers.
#[derive(Debug)]
pub struct MemoryBudget {
    /// `u64::MAX`: unlimited (reservations are still counted). Set once the workers are
    /// warm and the process's resting memory is known.
    total: AtomicU64,
    reserved: Mutex<u64>,
    freed: Condvar,
}

/// A held reservation; released when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut reserved = self.budget.reserved.lock().unwrap_or_else(|p| p.into_inner());
        *reserved = reserved.saturating_sub(self.bytes);
        self.budget.freed.notify_all();
    }
}

impl MemoryBudget {
    pub fn new(total: Option<u64>) -> Self {
        Self { total: AtomicU64::new(total.unwrap_or(u64::MAX)), reserved: Mutex::new(0), freed: Condvar::new() }
    }

    pub fn set_total(&self, total: Option<u64>) {
        self.total.store(total.unwrap_or(u64::MAX), Ordering::Release);
        self.freed.notify_all();
    }

    pub fn total(&self) -> Option<u64> {
        let t = self.limit();
        (t != u64::MAX).then_some(t)
    }

    fn limit(&self) -> u64 {
        self.total.load(Ordering::Acquire)
    }

    pub fn reserved(&self) -> u64 {
        *self.reserved.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when a job needing `bytes` could ever run here.
    pub fn fits(&self, bytes: u64) -> bool {
        bytes <= self.limit()
    }

    /// Waits (blocking the calling worker) until `bytes` are free, or until `deadline`
    /// (`None` on timeout, and at once for more than the whole budget: see [`Self::fits`]).
    pub fn reserve(self: &Arc<Self>, bytes: u64, deadline: Option<Instant>) -> Option<Reservation> {
        if !self.fits(bytes) {
            return None;
        }
        let mut reserved = self.reserved.lock().unwrap_or_else(|p| p.into_inner());
        while reserved.saturating_add(bytes) > self.limit() {
            reserved = match deadline {
                None => self.freed.wait(reserved).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.checked_duration_since(Instant::now())?;
                    self.freed.wait_timeout(reserved, left).unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
        *reserved += bytes;
        Some(Reservation { budget: self.clone(), bytes })
    }

    /// Reserves `bytes` if they are free now, without waiting.
    pub fn try_reserve(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        let mut reserved = self.reserved.lock().unwrap_or_else(|p| p.into_inner());
        if reserved.saturating_add(bytes) > self.limit() {
            return None;
        }
        *reserved += bytes;
        Some(Reservation { budget: self.clone(), bytes })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    #[test]
    fn reservations_wait_for_each_other_and_never_exceed_the_total() {
        let budget = Arc::new(MemoryBudget::new(Some(100)));
        let peak = Arc::new(Mutex::new(0u64));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (budget, peak) = (budget.clone(), peak.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let r = budget.reserve(30 + i, None).expect("no deadline");
                        let now = budget.reserved();
                        let mut p = peak.lock().unwrap();
                        *p = (*p).max(now);
                        drop(p);
                        std::thread::yield_now();
                        drop(r);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let peak = *peak.lock().unwrap();
        assert!((60..=100).contains(&peak), "peak {peak}");
        assert_eq!(budget.reserved(), 0);
    }

    #[test]
    fn a_full_budget_times_out_at_the_deadline_and_a_freed_one_admits() {
        let budget = Arc::new(MemoryBudget::new(Some(100)));
        let held = budget.reserve(80, None).unwrap();
        assert!(budget.try_reserve(21).is_none() && budget.try_reserve(20).is_some());
        let t = Instant::now();
        assert!(budget.reserve(30, Some(t + Duration::from_millis(100))).is_none());
        assert!(t.elapsed() >= Duration::from_millis(100));
        assert!(!budget.fits(101) && budget.fits(100));
        drop(held);
        assert!(budget.reserve(100, Some(Instant::now() + Duration::from_millis(10))).is_some());
        assert_eq!(budget.reserved(), 0);
    }

    #[test]
    fn the_photo_budget_leaves_room_for_the_process_and_a_second_gallery() {
        assert_eq!(photo_budget(None, 100, 10), None);
        assert_eq!(photo_budget(Some(1000), 300, 100), Some(600));
        assert_eq!(photo_budget(Some(1000), 950, 100), Some(0));
        assert!(resident_bytes().unwrap() > 1 << 20);
    }
}
