//! Files the relay creates are its user's alone: segment files hold whole bodies (names, phone
//! numbers), logs name connections. The umask is narrowed to 077 when the command starts, so that
//! what sled and the log writer create themselves is 0600 whatever umask the relay was given; the
//! store also sets its folder's modes at open (`store::private`).

/// Narrows the process umask to 077; call before any file is created. Only the binary calls it:
/// the library leaves the umask of a process that embeds it (its tests) alone.
pub fn private() {
    // SAFETY: umask only sets the process's file mode mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}
