// Process probes and the C timer floor for vtasks-bench. Functions return >= 0 or -errno.
#ifndef CBENCHSUPPORT_H
#define CBENCHSUPPORT_H

#include <stdint.h>

/// CLOCK_MONOTONIC in nanoseconds: the one clock every peer's lateness is measured with.
int64_t cb_now_ns(void);

/// The floor column of W6: `iterations` sequential sleeps of `period_ns` on an absolute
/// CLOCK_MONOTONIC timerfd, read blockingly, with the calling thread's timer slack at 1 ns (restored
/// afterwards). Writes each wake-up's lateness (wake time minus deadline, ns) to `lateness_out`.
int cb_timerfd_floor(int iterations, int64_t period_ns, int64_t *lateness_out);

/// Resident set size now, in bytes (/proc/self/statm).
int64_t cb_rss_bytes(void);

/// Peak resident set size (VmHWM of /proc/self/status), in bytes.
int64_t cb_peak_rss_bytes(void);

/// Resets VmHWM to the current RSS (writes 5 to /proc/self/clear_refs); -errno when refused.
int cb_reset_peak_rss(void);

/// Returns freed heap memory to the kernel (glibc malloc_trim(0)), so RSS deltas show what a peer
/// still holds rather than what the allocator caches.
void cb_malloc_trim(void);

/// User plus system CPU time of the whole process (getrusage RUSAGE_SELF), in nanoseconds.
int64_t cb_process_cpu_ns(void);

#endif
