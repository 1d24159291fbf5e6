/* An LD_PRELOAD shim that makes fsync and fdatasync fail with EIO, as a failing disk
 * does, for the disk-fault tests (tests/compat/test_disks.py).
 *
 * It fails a call only while the file named by DLOG_FAULT_TRIGGER exists, and only for
 * descriptors whose path (/proc/self/fd/N) contains DLOG_FAULT_MATCH: the test arms it
 * at a moment of its choosing, for one partition's files. Otherwise it calls libc. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int armed_for(int fd) {
    const char *trigger = getenv("DLOG_FAULT_TRIGGER");
    const char *match = getenv("DLOG_FAULT_MATCH");
    if (!trigger || !match || access(trigger, F_OK) != 0) return 0;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = '\0';
    return strstr(path, match) != NULL;
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (armed_for(fd)) { errno = EIO; return -1; }
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    if (armed_for(fd)) { errno = EIO; return -1; }
    return real(fd);
}
