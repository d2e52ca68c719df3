//! Loopback ports for the processes the tests start.
//!
//! A port taken with `bind(":0")` and released comes from the kernel's ephemeral range, and
//! the kernel may hand it to any outgoing connection (a test's own health polling) before
//! the child process binds it: "Address already in use" on a busy machine. Ports below that
//! range are never handed out by the kernel, so only another test picking the same number
//! could collide: the picks start at a per-process random offset and never repeat in a
//! process, and each one is checked by binding it.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The lowest port the tests take; below it sit well-known services.
const FLOOR: u16 = 10_000;

/// A loopback port that nothing listens on and that the kernel will not hand to a client
/// socket (falls back to an ephemeral port when the ephemeral range leaves no room below it).
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ceiling = ephemeral_floor();
    if ceiling > FLOOR + 1_000 {
        let span = u32::from(ceiling - FLOOR);
        // Drawn once: the picks then walk the range from it and never repeat in a process.
        static START: OnceLock<u32> = OnceLock::new();
        let start = *START.get_or_init(process_seed) % span;
        for _ in 0..span {
            let i = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = FLOOR + ((start + i) % span) as u16;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// The low end of the kernel's ephemeral port range (Linux's default when unreadable).
fn ephemeral_floor() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(32_768)
}

/// Differs between test processes running at the same time.
fn process_seed() -> u32 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    std::process::id().wrapping_mul(2_654_435_761).wrapping_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ports.len(), "a port was handed out twice: {ports:?}");
        let floor = ephemeral_floor();
        for p in ports {
            assert!(p >= FLOOR && p < floor, "{p} is outside {FLOOR}..{floor}");
            TcpListener::bind(("127.0.0.1", p)).unwrap_or_else(|e| panic!("port {p}: {e}"));
        }
    }
}
