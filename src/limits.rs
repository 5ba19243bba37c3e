//! Per-client limits: how many websockets and sessions one IP address may hold at once, on top
//! of the server-wide `--max-sessions`. One hostile or buggy client cannot take every session
//! slot or every file descriptor.
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts what each client IP holds; a [`Slot`] gives its unit back when dropped.
#[derive(Clone)]
pub struct PerIp {
    inner: Arc<Inner>,
}

struct Inner {
    /// What one address may hold; 0 means no limit.
    max: usize,
    /// Held units by address (addresses holding nothing are removed, so the map stays small).
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One unit held by one address.
#[derive(Debug)]
pub struct Slot {
    inner: Arc<Inner>,
    ip: IpAddr,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerIp").field("max", &self.max).finish()
    }
}

impl PerIp {
    /// At most `max` units per address (0 = unlimited).
    pub fn new(max: usize) -> Self {
        PerIp {
            inner: Arc::new(Inner {
                max,
                held: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The limit (0 = none).
    pub fn max(&self) -> usize {
        self.inner.max
    }

    /// Takes a unit for `ip`, or `None` when it already holds the maximum.
    pub fn try_acquire(&self, ip: IpAddr) -> Option<Slot> {
        let ip = canonical(ip);
        let mut held = self.inner.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(ip).or_insert(0);
        if self.inner.max != 0 && *n >= self.inner.max {
            if *n == 0 {
                held.remove(&ip);
            }
            return None;
        }
        *n += 1;
        Some(Slot {
            inner: self.inner.clone(),
            ip,
        })
    }

    /// Units `ip` holds now.
    pub fn held(&self, ip: IpAddr) -> usize {
        let held = self.inner.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(&canonical(ip)).copied().unwrap_or(0)
    }

    /// Units held by every address together.
    pub fn total(&self) -> usize {
        let held = self.inner.held.lock().unwrap_or_else(|p| p.into_inner());
        held.values().sum()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.inner.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

/// An IPv4 client reaching a dual-stack socket appears as `::ffff:a.b.c.d`; count it as the
/// IPv4 address it is.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_address_and_gives_back_on_drop() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let a_mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        // (limit, acquisitions from a, how many succeed)
        let cases = [(2usize, 3usize, 2usize), (0, 5, 5), (1, 1, 1)];
        for (max, tries, ok) in cases {
            let per_ip = PerIp::new(max);
            let slots: Vec<Slot> = (0..tries)
                .filter_map(|i| per_ip.try_acquire(if i % 2 == 0 { a } else { a_mapped }))
                .collect();
            assert_eq!(slots.len(), ok, "max {max}");
            assert_eq!(per_ip.held(a), ok);
            // Another address is not affected.
            assert!(per_ip.try_acquire(b).is_some());
            drop(slots);
            assert_eq!(per_ip.held(a), 0);
            assert_eq!(per_ip.total(), 0);
            assert!(per_ip.try_acquire(a).is_some());
        }
    }
}
