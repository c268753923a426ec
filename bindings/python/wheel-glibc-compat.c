/* Linked into the wheel's libnotif.so and notif (bindings/python/wheel.sh only).
 *
 * Rust's std (1.9x) calls getrandom(3) directly, a glibc 2.25 function: built
 * against glibc 2.17, libnotif.so would carry an unversioned, non-weak
 * reference to it (which auditwheel does not see, and which glibc 2.17-2.24
 * cannot resolve) and the notif executable would not link at all. This
 * definition, hidden (neither exported nor interposable), satisfies std with
 * the system call itself, which is all that glibc's getrandom does; std falls
 * back to /dev/urandom when the kernel answers ENOSYS. */
#define _GNU_SOURCE
#include <stddef.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

__attribute__((visibility("hidden"))) ssize_t getrandom(void *buf, size_t len, unsigned int flags)
{
    return syscall(SYS_getrandom, buf, len, flags);
}
