//! Randomness from the operating system (`getrandom`), the one source for everything the
//! server draws: SSRCs, initial RTP sequence numbers and timestamps (RFC 3550 §5.1 wants them
//! unpredictable), session ids, WHEP resource keys and access tokens.
//!
//! The OS source does not fail on Linux once booted; if it ever did, values needed only to be
//! distinct (SSRCs, sequence numbers) fall back to a hash of a counter and the clock, while
//! secrets ([`hex`]) return the error, so that no guessable secret is ever handed out.
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinct-enough fallback for non-secret values.
fn fallback() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

/// A random `u64` (not for secrets: see [`hex`]).
pub fn u64() -> u64 {
    getrandom::u64().unwrap_or_else(|_| fallback())
}

/// A random `u32` (SSRCs, initial timestamps).
pub fn u32() -> u32 {
    u64() as u32
}

/// A random `u16` (initial sequence numbers).
pub fn u16() -> u16 {
    u64() as u16
}

/// A random non-zero `u32` (SSRCs: 0 means "none" in our types).
pub fn nonzero_u32() -> u32 {
    u32().max(1)
}

/// `bytes` random bytes from the OS as lower-case hex: a secret (token, resource key).
pub fn hex(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_differ_and_secrets_have_their_length() {
        let a: Vec<u32> = (0..64).map(|_| super::u32()).collect();
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert!(distinct.len() > 60, "{a:?}");
        assert!((0..1000).all(|_| super::nonzero_u32() != 0));
        let s = super::hex(16).unwrap();
        assert_eq!(s.len(), 32);
        assert!(s.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(s, super::hex(16).unwrap());
    }
}
