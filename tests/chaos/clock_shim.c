/* Preloaded before libfaketime for the chaos suite's skewed-clock workers (tests/chaos/clocks.py).
 *
 * libfaketime 0.9.10 (Debian 12) fakes the wall clock, as asked, but its clock_nanosleep() returns
 * EINVAL for the monotonic clock even with FAKETIME_DONT_FAKE_MONOTONIC=1, and CPython's time.sleep()
 * uses clock_nanosleep(CLOCK_MONOTONIC): every sleep of the worker would raise. Sleeping is not what
 * the fault is about, so sleeps go straight to the kernel; reading the time stays faked. */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int clock_nanosleep(clockid_t clock_id, int flags, const struct timespec *request, struct timespec *remain) {
    return syscall(SYS_clock_nanosleep, clock_id, flags, request, remain) == 0 ? 0 : errno;
}

int nanosleep(const struct timespec *request, struct timespec *remain) {
    return (int)syscall(SYS_nanosleep, request, remain);
}
