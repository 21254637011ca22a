//! The allocator's settings for a long-running relay: few malloc arenas.
//!
//! glibc gives each thread that allocates concurrently an arena of its own, up to eight per core,
//! and an arena keeps what its thread freed for reuse by that arena only. The relay's threads
//! (HTTP workers, store writer, flusher, publisher, lapin, sled) pass bodies of up to a megabyte
//! between each other, so that kept memory ends up spread over a dozen arenas. In the 18 KB
//! benchmark the relay's peak RSS averaged 52.9 MB over six runs with two arenas against 61.4 MB
//! over three with glibc's default (runs across one round of changes, single runs varying by
//! ±15 MB: docs/benchmarks.md); its CPU showed no difference within the noise. `MALLOC_ARENA_MAX` in the environment still decides.

/// Arenas when the environment does not say.
const ARENAS: i32 = 2;

/// Caps glibc's malloc arenas; call before the relay's threads start (the logging thread too).
/// Elsewhere than glibc on Linux, a no-op.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes allocator parameters; M_ARENA_MAX takes any positive
        // value. Refused (0), glibc's default stays, which is only a cost in memory.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) };
    }
}
