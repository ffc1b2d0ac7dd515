// Process probes and the C timer floor for vtasks-bench (see the header).
#include "CBenchSupport.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

int64_t cb_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int cb_timerfd_floor(int iterations, int64_t period_ns, int64_t *lateness_out) {
  int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
  if (fd < 0) return -errno;
  int old_slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  int result = 0;
  for (int i = 0; i < iterations; i++) {
    int64_t deadline = cb_now_ns() + period_ns;
    struct itimerspec spec;
    memset(&spec, 0, sizeof spec);
    spec.it_value.tv_sec = deadline / 1000000000LL;
    spec.it_value.tv_nsec = deadline % 1000000000LL;
    if (timerfd_settime(fd, TFD_TIMER_ABSTIME, &spec, NULL) < 0) {
      result = -errno;
      break;
    }
    uint64_t expirations;
    ssize_t n;
    do {
      n = read(fd, &expirations, sizeof expirations);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      result = -errno;
      break;
    }
    lateness_out[i] = cb_now_ns() - deadline;
  }
  if (old_slack > 0) prctl(PR_SET_TIMERSLACK, (unsigned long)old_slack, 0, 0, 0);
  close(fd);
  return result;
}

int64_t cb_rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "re");
  if (!f) return -errno;
  long size = 0, resident = 0;
  int ok = fscanf(f, "%ld %ld", &size, &resident);
  fclose(f);
  if (ok != 2) return -EIO;
  return (int64_t)resident * sysconf(_SC_PAGESIZE);
}

int64_t cb_peak_rss_bytes(void) {
  FILE *f = fopen("/proc/self/status", "re");
  if (!f) return -errno;
  char line[256];
  int64_t kb = -EIO;
  while (fgets(line, sizeof line, f)) {
    long value;
    if (sscanf(line, "VmHWM: %ld kB", &value) == 1) {
      kb = value;
      break;
    }
  }
  fclose(f);
  return kb < 0 ? kb : kb * 1024;
}

int cb_reset_peak_rss(void) {
  int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  ssize_t n = write(fd, "5", 1);
  int err = n < 0 ? -errno : 0;
  close(fd);
  return err;
}

void cb_malloc_trim(void) { malloc_trim(0); }

int64_t cb_process_cpu_ns(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) < 0) return -errno;
  return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
         ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}
