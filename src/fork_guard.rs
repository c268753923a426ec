//! What happens to the library's descriptors and threads across fork().
//!
//! A forked child inherits copies of every descriptor but none of the server
//! threads. Left open in the child, the copies would keep each subscriber
//! connection (and the listening socket) alive after the parent closes them, so
//! a subscriber would never see the hang-up. The child therefore closes every
//! descriptor the library owns as the very first thing after fork(), in a
//! pthread_atfork handler, and bumps a generation counter that makes every handle
//! created before the fork refuse work with one relaxed load per call.

use std::cell::UnsafeCell;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Once;

static GENERATION: AtomicU64 = AtomicU64::new(0);
static REGISTRY: SpinLock<Vec<RawFd>> = SpinLock::new(Vec::new());
static INSTALL: Once = Once::new();

/// The process's fork generation: it changes in a child after every fork().
#[inline]
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

pub(crate) fn install_fork_handlers() {
    INSTALL.call_once(|| {
        // SAFETY: the three handlers are `extern "C"` functions with no arguments,
        // as pthread_atfork requires, and live as long as the process.
        let rc = unsafe {
            libc::pthread_atfork(
                Some(before_fork),
                Some(after_fork_in_parent),
                Some(after_fork_in_child),
            )
        };
        // pthread_atfork only fails with ENOMEM; without the handlers a child
        // would merely keep descriptors open, so this is not worth failing open() for.
        debug_assert_eq!(rc, 0);
    });
}

// Holding the registry lock across fork() means the child sees the registry in
// a consistent state, never half-way through an insertion by another thread.
extern "C" fn before_fork() {
    REGISTRY.lock_raw();
}

extern "C" fn after_fork_in_parent() {
    REGISTRY.unlock_raw();
}

// Runs in the child, where only async-signal-safe work is allowed: atomics,
// close(2), and shortening a Vec of integers (which frees nothing).
extern "C" fn after_fork_in_child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
    // SAFETY: before_fork took the lock in this same (now only) thread.
    let fds = unsafe { &mut *REGISTRY.value.get() };
    for &fd in fds.iter() {
        // SAFETY: the descriptor is one the library opened and still owned at fork time.
        unsafe { libc::close(fd) };
    }
    fds.clear();
    REGISTRY.unlock_raw();
}

/// A descriptor owned by the library: closed on drop in the process that opened
/// it, and closed by the fork handler (never twice) in a child.
#[derive(Debug)]
pub(crate) struct OwnedFd {
    fd: RawFd,
    generation: u64,
}

impl OwnedFd {
    /// Takes ownership of a freshly opened descriptor.
    pub(crate) fn register(fd: RawFd) -> OwnedFd {
        REGISTRY.with(|fds| fds.push(fd));
        OwnedFd {
            fd,
            generation: generation(),
        }
    }

    #[inline]
    pub(crate) fn raw(&self) -> RawFd {
        self.fd
    }

    /// Gives the descriptor back without closing it (ownership returns to the caller).
    pub(crate) fn into_raw(self) -> RawFd {
        let fd = self.fd;
        REGISTRY.with(|fds| {
            if let Some(pos) = fds.iter().rposition(|&registered| registered == fd) {
                fds.swap_remove(pos);
            }
        });
        std::mem::forget(self);
        fd
    }
}

impl Drop for OwnedFd {
    fn drop(&mut self) {
        if self.generation != generation() {
            return; // a child: the fork handler already closed it, and the number may be reused.
        }
        // Forget and close under the lock, so a fork in between can never
        // leave the child closing a number that was already reused.
        REGISTRY.with(|fds| {
            if let Some(pos) = fds.iter().rposition(|&fd| fd == self.fd) {
                fds.swap_remove(pos);
            }
            // SAFETY: we own the descriptor and nobody else closes it.
            unsafe { libc::close(self.fd) };
        });
    }
}

/// A lock that can be taken in one fork handler and released in another, which
/// std's Mutex (whose guard is a scoped value) cannot express. It is only ever
/// held for a few instructions or one close(2), so spinning is cheap.
struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by `locked`.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    const fn new(value: T) -> SpinLock<T> {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    fn lock_raw(&self) {
        let mut spins = 0u32;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    fn unlock_raw(&self) {
        self.locked.store(false, Ordering::Release);
    }

    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        self.lock_raw();
        // Unlock even if `f` panics (it only pushes to a Vec, but allocation can abort or panic).
        struct Unlock<'a, T>(&'a SpinLock<T>);
        impl<T> Drop for Unlock<'_, T> {
            fn drop(&mut self) {
                self.0.unlock_raw();
            }
        }
        let _unlock = Unlock(self);
        // SAFETY: we hold the lock.
        f(unsafe { &mut *self.value.get() })
    }
}
