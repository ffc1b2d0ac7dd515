// CShims: thin C wrappers over Linux calls that Swift cannot make cleanly (variadic or
// macro-based APIs, packed structs, thread-local storage). Every function returns >= 0 on
// success or -errno on failure; every fd is opened CLOEXEC (and NONBLOCK when it is polled).
#ifndef VT_CSHIMS_H
#define VT_CSHIMS_H

#include <stdint.h>
#include <stddef.h>
#include <pthread.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- epoll -------------------------------------------------------------------------------
// `struct epoll_event` is packed on x86_64, which Swift imports badly: use this plain layout.
typedef struct vt_epoll_event {
  uint32_t events;
  uint64_t data;
} vt_epoll_event;

enum {
  VT_EPOLLIN = 0x001,
  VT_EPOLLOUT = 0x004,
  VT_EPOLLERR = 0x008,
  VT_EPOLLHUP = 0x010,
  VT_EPOLLRDHUP = 0x2000,
  VT_EPOLLONESHOT = 1u << 30,
  VT_EPOLL_CTL_ADD = 1,
  VT_EPOLL_CTL_DEL = 2,
  VT_EPOLL_CTL_MOD = 3,
};

// epoll_create1(EPOLL_CLOEXEC): the flag is a macro Swift does not import as a constant.
int vt_epoll_create(void);
// epoll_ctl with the unpacked event layout above.
int vt_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);
// epoll_wait converting packed kernel events to vt_epoll_event; EINTR is returned as -EINTR.
int vt_epoll_wait(int epfd, vt_epoll_event *events, int maxevents, int timeout_ms);

// ---- eventfd -----------------------------------------------------------------------------
// eventfd(EFD_CLOEXEC | EFD_NONBLOCK): flags are macros.
int vt_eventfd_create(unsigned int initval);
// write(2) of a uint64_t counter increment, retrying EINTR.
int vt_eventfd_write(int fd, uint64_t value);
// read(2) of the counter; -EAGAIN when it is zero.
int vt_eventfd_read(int fd, uint64_t *value);

// ---- timerfd -----------------------------------------------------------------------------
enum { VT_CLOCK_MONOTONIC = 1, VT_CLOCK_BOOTTIME = 7 };
// timerfd_create(clock, TFD_CLOEXEC | TFD_NONBLOCK): flags are macros.
int vt_timerfd_create(int clockid);
// timerfd_settime(TFD_TIMER_ABSTIME) one-shot at an absolute deadline in nanoseconds;
// deadline 0 disarms. Hides struct itimerspec.
int vt_timerfd_set_abs_ns(int fd, int64_t deadline_ns);
// timerfd_gettime: nanoseconds until expiry (0 when disarmed) in *remaining_ns.
int vt_timerfd_get_ns(int fd, int64_t *remaining_ns);
// read(2) of the expiration count; -EAGAIN when none.
int vt_timerfd_read(int fd, uint64_t *expirations);

// clock_gettime on the given clock in nanoseconds (never fails for valid clocks).
int64_t vt_clock_ns(int clockid);

// ---- CPU affinity ------------------------------------------------------------------------
// sched_getaffinity with a dynamically sized set (CPU_ALLOC/CPU_COUNT_S are macros), growing
// past 1024 CPUs; returns the number of CPUs this thread may run on.
int vt_affinity_count(void);
// pthread_setaffinity_np of the calling thread to one CPU (cpu_set_t macros).
int vt_pin_current_thread(int cpu);

// ---- threads -----------------------------------------------------------------------------
// pthread_setname_np(pthread_self(), name) truncated to the kernel's 15 bytes.
int vt_set_thread_name(const char *name);
// pthread_getname_np of the calling thread into buf (len >= 16).
int vt_get_thread_name(char *buf, size_t len);
// prctl(PR_SET_TIMERSLACK, ns): prctl is variadic.
int vt_set_timer_slack(unsigned long ns);
// gettid(2): no Glibc overlay for it on older glibc.
int vt_gettid(void);
// pthread_create with an optional stack size, passing through the fault-injection hook below.
// Returns 0 or -errno; *out is valid only on success.
int vt_thread_create(pthread_t *out, void *(*start)(void *), void *arg, size_t stack_size);
// pthread_join, returns 0 or -errno.
int vt_thread_join(pthread_t thread);
// Number of threads in this process (entries of /proc/self/task), or -errno.
int vt_thread_count(void);
// Number of open fds (entries of /proc/self/fd, minus the one used to read it), or -errno.
int vt_fd_count(void);
// pipe2(fds, O_CLOEXEC | O_NONBLOCK): pipe2 is hidden behind _GNU_SOURCE in Glibc's module.
int vt_pipe(int fds[2]);
// fcntl(fd, F_GETFD) & FD_CLOEXEC: fcntl is variadic. 1, 0 or -errno.
int vt_fd_is_cloexec(int fd);

// Thread-local "who owns this thread" marker (Swift has no thread_local storage).
void vt_set_thread_owner(void *owner, intptr_t index);
void *vt_thread_owner(void);
intptr_t vt_thread_owner_index(void);

// pthread_mutex_init with PTHREAD_MUTEX_ADAPTIVE_NP (a _GNU_SOURCE constant): spins briefly
// before sleeping in the kernel.
int vt_mutex_init_adaptive(pthread_mutex_t *mutex);

// ---- parking -----------------------------------------------------------------------------
// A one-permit parker on a futex (futex(2) is only reachable through syscall(2), variadic).
// state: 0 = empty, 1 = notified, 2 = parked. Park consumes a pending notification at once.
typedef struct vt_parker {
  uint32_t state;
} vt_parker;
void vt_parker_init(vt_parker *p);
// Park until unparked, or timeout_ns elapses when >= 0. Returns 1 when notified, 0 on timeout.
int vt_park(vt_parker *p, int64_t timeout_ns);
void vt_unpark(vt_parker *p);

// A pause instruction for short spins (an intrinsic).
void vt_cpu_relax(void);

// ---- fork detection ----------------------------------------------------------------------
// A counter bumped in every forked child (pthread_atfork is registered on first use). A manager
// records it at init; a different value later means "this is a forked child": its threads are
// gone, so it refuses work instead of touching state copied mid-flight.
uint64_t vt_fork_generation(void);

// ---- test helpers (tests only) -------------------------------------------------------------
// fork(2): unavailable to Swift code. Returns the pid, 0 in the child (which dies of SIGALRM
// after 60 s, should it deadlock), or -errno.
int vt_testing_fork(void);
// waitpid(2) for `pid`; returns its exit status (0..255), 128+signal, or -errno.
int vt_testing_wait(int pid);
// _exit(2) without running atexit handlers (for forked children).
void vt_testing_exit(int code);
// fork + exec /bin/sh checking that none of `fds` is open after exec: 0 none open, 1 some open.
int vt_testing_exec_sees_fds(const int *fds, int count);
// setrlimit(RLIMIT_NOFILE) soft limit (the resource enum does not import cleanly).
int vt_testing_set_nofile_limit(uint64_t soft);
uint64_t vt_testing_nofile_limit(void);
// Installs a no-op handler for `sig` WITHOUT SA_RESTART (so blocking calls see EINTR).
int vt_testing_install_noop_handler(int sig);
// tgkill(sig) to every thread of this process; returns how many were signalled.
int vt_testing_signal_all_threads(int sig);

// ---- fault injection (tests only, inert unless armed) -------------------------------------
// Make the k-th following vt_thread_create (1-based) fail with `err`; k = 0 disarms.
void vt_testing_fail_thread_create_at(int k, int err);
// Make every following vt_thread_create fail with `err` (0 disarms).
void vt_testing_fail_all_thread_creates(int err);

#ifdef __cplusplus
}
#endif
#endif
