// Implementation of CShims.h. Each function is a thin wrapper: >= 0 on success, -errno on error.
#include "CShims.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

int vt_epoll_create(void) {
  int fd = epoll_create1(EPOLL_CLOEXEC);
  return fd < 0 ? -errno : fd;
}

int vt_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = events;
  ev.data.u64 = data;
  int r = epoll_ctl(epfd, op, fd, &ev);
  return r < 0 ? -errno : r;
}

int vt_epoll_wait(int epfd, vt_epoll_event *events, int maxevents, int timeout_ms) {
  struct epoll_event kev[256];
  if (maxevents > 256) maxevents = 256;
  int n = epoll_wait(epfd, kev, maxevents, timeout_ms);
  if (n < 0) return -errno;
  for (int i = 0; i < n; i++) {
    events[i].events = kev[i].events;
    events[i].data = kev[i].data.u64;
  }
  return n;
}

int vt_eventfd_create(unsigned int initval) {
  int fd = eventfd(initval, EFD_CLOEXEC | EFD_NONBLOCK);
  return fd < 0 ? -errno : fd;
}

int vt_eventfd_write(int fd, uint64_t value) {
  for (;;) {
    ssize_t r = write(fd, &value, sizeof value);
    if (r == (ssize_t)sizeof value) return 0;
    if (r < 0 && errno == EINTR) continue;
    return r < 0 ? -errno : -EIO;
  }
}

int vt_eventfd_read(int fd, uint64_t *value) {
  for (;;) {
    ssize_t r = read(fd, value, sizeof *value);
    if (r == (ssize_t)sizeof *value) return 0;
    if (r < 0 && errno == EINTR) continue;
    return r < 0 ? -errno : -EIO;
  }
}

int vt_timerfd_create(int clockid) {
  int fd = timerfd_create(clockid, TFD_CLOEXEC | TFD_NONBLOCK);
  return fd < 0 ? -errno : fd;
}

int vt_timerfd_set_abs_ns(int fd, int64_t deadline_ns) {
  struct itimerspec its;
  memset(&its, 0, sizeof its);
  if (deadline_ns > 0) {
    its.it_value.tv_sec = deadline_ns / 1000000000LL;
    its.it_value.tv_nsec = deadline_ns % 1000000000LL;
  }
  int r = timerfd_settime(fd, TFD_TIMER_ABSTIME, &its, NULL);
  return r < 0 ? -errno : 0;
}

int vt_timerfd_get_ns(int fd, int64_t *remaining_ns) {
  struct itimerspec its;
  int r = timerfd_gettime(fd, &its);
  if (r < 0) return -errno;
  *remaining_ns = (int64_t)its.it_value.tv_sec * 1000000000LL + its.it_value.tv_nsec;
  return 0;
}

int vt_timerfd_read(int fd, uint64_t *expirations) {
  for (;;) {
    ssize_t r = read(fd, expirations, sizeof *expirations);
    if (r == (ssize_t)sizeof *expirations) return 0;
    if (r < 0 && errno == EINTR) continue;
    return r < 0 ? -errno : -EIO;
  }
}

int64_t vt_clock_ns(int clockid) {
  struct timespec ts;
  clock_gettime(clockid, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int vt_affinity_count(void) {
  for (int ncpus = 1024; ncpus <= (1 << 22); ncpus *= 2) {
    cpu_set_t *set = CPU_ALLOC(ncpus);
    if (!set) return -ENOMEM;
    size_t size = CPU_ALLOC_SIZE(ncpus);
    CPU_ZERO_S(size, set);
    if (sched_getaffinity(0, size, set) == 0) {
      int count = CPU_COUNT_S(size, set);
      CPU_FREE(set);
      return count;
    }
    int err = errno;
    CPU_FREE(set);
    if (err != EINVAL) return -err;
  }
  return -EINVAL;
}

int vt_pin_current_thread(int cpu) {
  if (cpu < 0) return -EINVAL;
  int ncpus = cpu + 1 > 1024 ? cpu + 1 : 1024;
  cpu_set_t *set = CPU_ALLOC(ncpus);
  if (!set) return -ENOMEM;
  size_t size = CPU_ALLOC_SIZE(ncpus);
  CPU_ZERO_S(size, set);
  CPU_SET_S(cpu, size, set);
  int r = pthread_setaffinity_np(pthread_self(), size, set);
  CPU_FREE(set);
  return -r;
}

int vt_set_thread_name(const char *name) {
  char buf[16];
  strncpy(buf, name, 15);
  buf[15] = 0;
  return -pthread_setname_np(pthread_self(), buf);
}

int vt_get_thread_name(char *buf, size_t len) {
  return -pthread_getname_np(pthread_self(), buf, len);
}

int vt_set_timer_slack(unsigned long ns) {
  int r = prctl(PR_SET_TIMERSLACK, ns, 0, 0, 0);
  return r < 0 ? -errno : 0;
}

int vt_gettid(void) { return (int)syscall(SYS_gettid); }

static int vt_fail_at = 0;       // guarded by atomics below; 0 = disarmed
static int vt_fail_err = 0;
static int vt_fail_all_err = 0;

void vt_testing_fail_thread_create_at(int k, int err) {
  __atomic_store_n(&vt_fail_err, err, __ATOMIC_SEQ_CST);
  __atomic_store_n(&vt_fail_at, k, __ATOMIC_SEQ_CST);
}

void vt_testing_fail_all_thread_creates(int err) {
  __atomic_store_n(&vt_fail_all_err, err, __ATOMIC_SEQ_CST);
}

int vt_thread_create(pthread_t *out, void *(*start)(void *), void *arg, size_t stack_size) {
  int all = __atomic_load_n(&vt_fail_all_err, __ATOMIC_SEQ_CST);
  if (all) return -all;
  if (__atomic_load_n(&vt_fail_at, __ATOMIC_SEQ_CST) > 0) {
    int left = __atomic_sub_fetch(&vt_fail_at, 1, __ATOMIC_SEQ_CST);
    if (left == 0) return -__atomic_load_n(&vt_fail_err, __ATOMIC_SEQ_CST);
  }
  pthread_attr_t attr;
  int r = pthread_attr_init(&attr);
  if (r) return -r;
  if (stack_size > 0) pthread_attr_setstacksize(&attr, stack_size);
  r = pthread_create(out, &attr, start, arg);
  pthread_attr_destroy(&attr);
  return -r;
}

int vt_thread_join(pthread_t thread) { return -pthread_join(thread, NULL); }

static int vt_count_dir(const char *path, int minus) {
  DIR *d = opendir(path);
  if (!d) return -errno;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    n++;
  }
  closedir(d);
  return n - minus;
}

int vt_thread_count(void) { return vt_count_dir("/proc/self/task", 0); }
int vt_fd_count(void) { return vt_count_dir("/proc/self/fd", 1); }

int vt_pipe(int fds[2]) {
  return pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0 ? -errno : 0;
}

int vt_fd_is_cloexec(int fd) {
  int r = fcntl(fd, F_GETFD);
  if (r < 0) return -errno;
  return (r & FD_CLOEXEC) ? 1 : 0;
}

static __thread void *vt_owner = NULL;
static __thread intptr_t vt_owner_index = -1;
void vt_set_thread_owner(void *owner, intptr_t index) {
  vt_owner = owner;
  vt_owner_index = index;
}
void *vt_thread_owner(void) { return vt_owner; }
intptr_t vt_thread_owner_index(void) { return vt_owner_index; }

void vt_parker_init(vt_parker *p) { __atomic_store_n(&p->state, 0, __ATOMIC_SEQ_CST); }

static long vt_futex(uint32_t *addr, int op, uint32_t val, const struct timespec *ts) {
  return syscall(SYS_futex, addr, op, val, ts, NULL, 0);
}

int vt_park(vt_parker *p, int64_t timeout_ns) {
  // Fast path: consume a pending notification.
  uint32_t expected = 1;
  if (__atomic_compare_exchange_n(&p->state, &expected, 0, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
    return 1;
  expected = 0;
  if (!__atomic_compare_exchange_n(&p->state, &expected, 2, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    // Must have been notified in between.
    __atomic_store_n(&p->state, 0, __ATOMIC_SEQ_CST);
    return 1;
  }
  int64_t deadline = -1;
  if (timeout_ns >= 0) {
    int64_t now = vt_clock_ns(CLOCK_MONOTONIC);
    // A timeout past the end of the clock's range waits forever (no signed overflow).
    deadline = timeout_ns > INT64_MAX - now ? -1 : now + timeout_ns;
  }
  for (;;) {
    struct timespec ts, *tsp = NULL;
    if (deadline >= 0) {
      int64_t left = deadline - vt_clock_ns(CLOCK_MONOTONIC);
      if (left <= 0) {
        // Timed out: leave the parked state unless a notification raced in.
        uint32_t st = 2;
        if (__atomic_compare_exchange_n(&p->state, &st, 0, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
          return 0;
        __atomic_store_n(&p->state, 0, __ATOMIC_SEQ_CST);
        return 1;
      }
      ts.tv_sec = left / 1000000000LL;
      ts.tv_nsec = left % 1000000000LL;
      tsp = &ts;
    }
    vt_futex(&p->state, FUTEX_WAIT_PRIVATE, 2, tsp);
    uint32_t st = 1;
    if (__atomic_compare_exchange_n(&p->state, &st, 0, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
      return 1;
    // Spurious wake-up, EINTR or timeout: loop (re-checking the deadline).
  }
}

void vt_unpark(vt_parker *p) {
  uint32_t prev = __atomic_exchange_n(&p->state, 1, __ATOMIC_SEQ_CST);
  if (prev == 2) vt_futex(&p->state, FUTEX_WAKE_PRIVATE, 1, NULL);
}

void vt_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static uint64_t vt_fork_gen = 0;
static pthread_once_t vt_fork_once = PTHREAD_ONCE_INIT;
static void vt_atfork_child(void) { __atomic_add_fetch(&vt_fork_gen, 1, __ATOMIC_SEQ_CST); }
static void vt_fork_register(void) { pthread_atfork(NULL, NULL, vt_atfork_child); }

uint64_t vt_fork_generation(void) {
  pthread_once(&vt_fork_once, vt_fork_register);
  return __atomic_load_n(&vt_fork_gen, __ATOMIC_ACQUIRE);
}

int vt_testing_fork(void) {
  pid_t pid = fork();
  // A child that deadlocks on a lock some other parent thread held at the fork dies of SIGALRM
  // after 60 s (the parent sees 128 + 14) instead of hanging the test run.
  if (pid == 0) alarm(60);
  return pid < 0 ? -errno : pid;
}

int vt_testing_wait(int pid) {
  int status = 0;
  for (;;) {
    pid_t r = waitpid(pid, &status, 0);
    if (r >= 0) break;
    if (errno != EINTR) return -errno;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -EINVAL;
}

void vt_testing_exit(int code) { _exit(code); }

int vt_testing_exec_sees_fds(const int *fds, int count) {
  char list[4096];
  size_t used = 0;
  list[0] = 0;
  for (int i = 0; i < count && used < sizeof list - 16; i++)
    used += (size_t)snprintf(list + used, sizeof list - used, "%d ", fds[i]);
  pid_t pid = fork();
  if (pid < 0) return -errno;
  if (pid == 0) {
    char *argv[] = {"sh", "-c",
                    "for fd in $VT_FDS; do if [ -e /proc/$$/fd/$fd ]; then exit 1; fi; done; exit 0",
                    NULL};
    char env[4200];
    snprintf(env, sizeof env, "VT_FDS=%s", list);
    char *envp[] = {env, "PATH=/usr/bin:/bin", NULL};
    execve("/bin/sh", argv, envp);
    _exit(127);
  }
  return vt_testing_wait(pid);
}

int vt_testing_set_nofile_limit(uint64_t soft) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return -errno;
  rl.rlim_cur = soft;
  return setrlimit(RLIMIT_NOFILE, &rl) < 0 ? -errno : 0;
}

uint64_t vt_testing_nofile_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return 0;
  return rl.rlim_cur;
}

static void vt_noop_handler(int sig) { (void)sig; }

int vt_testing_install_noop_handler(int sig) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = vt_noop_handler;
  sa.sa_flags = 0;  // no SA_RESTART: interrupted calls return EINTR
  sigemptyset(&sa.sa_mask);
  return sigaction(sig, &sa, NULL) < 0 ? -errno : 0;
}

int vt_testing_signal_all_threads(int sig) {
  DIR *d = opendir("/proc/self/task");
  if (!d) return -errno;
  int n = 0;
  pid_t pid = getpid();
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    int tid = atoi(e->d_name);
    if (syscall(SYS_tgkill, pid, tid, sig) == 0) n++;
  }
  closedir(d);
  return n;
}

int vt_mutex_init_adaptive(pthread_mutex_t *mutex) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
  int r = pthread_mutex_init(mutex, &attr);
  pthread_mutexattr_destroy(&attr);
  return -r;
}
