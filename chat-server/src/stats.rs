//! Counters the server keeps about itself, readable from any thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use chat_proto::CloseReason;

/// Running totals; every field only grows except `connections` and `members`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Accept calls that failed (e.g. out of file descriptors).
    pub accept_errors: AtomicU64,
    /// Connections open now.
    pub connections: AtomicU64,
    /// Members joined now.
    pub members: AtomicU64,
    /// Socket write calls made by writers.
    pub writes: AtomicU64,
    /// Frames carried by those writes.
    pub frames_written: AtomicU64,
    /// Bytes carried by those writes.
    pub bytes_written: AtomicU64,
    /// The most bytes queued for one connection that kept up (lag behind the feed, or its
    /// own replies); connections beyond the bound are closed as too slow instead.
    pub max_queued: AtomicU64,
    /// Connections closed as too slow.
    pub too_slow: AtomicU64,
    /// Members that joined the room (every node's, in a shared room).
    pub joins: AtomicU64,
    /// Members that left (of the whole room), by reason: indexed like `CloseReason::ALL`.
    pub leaves: [AtomicU64; CloseReason::ALL.len()],
    /// Connections the room closed, by reason: indexed like `CloseReason::ALL`.
    pub closes: [AtomicU64; CloseReason::ALL.len()],
    /// A shared room's lease ran out unrenewed and nothing has come from its log since: the
    /// node is out of the room (`/readyz` says 503).
    pub lease_lost: AtomicBool,
    /// TLS handshakes completed.
    pub tls_handshakes: AtomicU64,
    /// TLS handshakes that failed, or that the connection ended before (timed out, closed).
    pub tls_failures: AtomicU64,
    /// Hellos refused, by reason (the labels of `--metrics-addr`'s `chat_refused_hellos`).
    pub refused: [AtomicU64; crate::metrics::REFUSALS.len()],
    /// Password work (checks and hashes) waiting for a hashing thread now.
    pub password_queued: AtomicU64,
    /// The most password work that ever waited at once: never more than the pool's queue.
    pub password_queue_peak: AtomicU64,
    /// Password work done (each an Argon2id run).
    pub password_checks: AtomicU64,
    /// Password work refused because the queue was full.
    pub password_busy: AtomicU64,
}

impl Stats {
    /// Frames per write call so far: how well writers coalesce.
    pub fn frames_per_write(&self) -> f64 {
        let writes = self.writes.load(Relaxed);
        if writes == 0 {
            0.0
        } else {
            self.frames_written.load(Relaxed) as f64 / writes as f64
        }
    }
}
