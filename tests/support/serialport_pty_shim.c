/*
 * LD_PRELOAD shim that lets libserialport 0.1.1 open a pseudo-terminal, so the
 * serial console tests run the real library (open, configure, read, write,
 * DTR/RTS, break) against a pty the test owns.
 *
 * libserialport fails on a pty in exactly two places, and only those are
 * answered here; every other call goes to the real function:
 *   1. sp_get_port_by_name() lstat()s /sys/class/tty/pts/N (absent) and then
 *      readlink()s it. For an existing /dev/pts/N the shim reports a symlink
 *      to a virtual tty device.
 *   2. sp_open() reads the modem lines with ioctl(TIOCMGET), which a pty
 *      refuses with ENOTTY; later DTR/RTS changes use TIOCMBIS/TIOCMBIC. On a
 *      pty slave the shim keeps the modem bits per pty (so every descriptor
 *      of the same pty sees the same bits) and answers these requests.
 * Break requests (TIOCSBRK/TIOCCBRK) still go to the kernel; the shim only
 * counts them so a test can see that a break was sent.
 *
 * Test hooks (resolve with dlsym(RTLD_DEFAULT, ...)):
 *   unsigned otarig_pty_shim_modem_bits(const char* pts_path);
 *   unsigned otarig_pty_shim_break_count(const char* pts_path);
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <termios.h>
#include <unistd.h>

#define SHIM_EXPORT __attribute__((visibility("default")))

/* Unix98 pty slaves use majors 136..143 (UNIX98_PTY_SLAVE_MAJOR). */
static int is_pty_slave_dev(dev_t rdev) {
  unsigned maj = major(rdev);
  return maj >= 136 && maj <= 143;
}

static const char kSysPts[] = "/sys/class/tty/pts/";

/* "/sys/class/tty/pts/N" for an existing /dev/pts/N: the pts number, else -1. */
static long sys_pts_number(const char* path) {
  if (path == NULL || strncmp(path, kSysPts, sizeof(kSysPts) - 1) != 0) return -1;
  const char* digits = path + sizeof(kSysPts) - 1;
  if (*digits == '\0') return -1;
  char* end = NULL;
  long n = strtol(digits, &end, 10);
  if (*end != '\0' || n < 0) return -1;
  char dev[64];
  snprintf(dev, sizeof dev, "/dev/pts/%ld", n);
  struct stat st;
  if (stat(dev, &st) != 0 || !S_ISCHR(st.st_mode)) return -1;
  return n;
}

static void fake_link_stat(struct stat* st) {
  memset(st, 0, sizeof *st);
  st->st_mode = S_IFLNK | 0777;
  st->st_nlink = 1;
}

/* ---- modem bits, one entry per pty device ---- */

#define MAX_PTYS 256
struct pty_state {
  dev_t rdev;
  int used;
  int bits;
  unsigned breaks;
};
static struct pty_state g_ptys[MAX_PTYS];
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static struct pty_state* state_for(dev_t rdev) {
  struct pty_state* free_slot = NULL;
  for (int i = 0; i < MAX_PTYS; ++i) {
    if (g_ptys[i].used && g_ptys[i].rdev == rdev) return &g_ptys[i];
    if (!g_ptys[i].used && free_slot == NULL) free_slot = &g_ptys[i];
  }
  if (free_slot == NULL) return NULL;
  free_slot->used = 1;
  free_slot->rdev = rdev;
  /* A freshly opened line: DTR and RTS raised, as a serial driver does. */
  free_slot->bits = TIOCM_DTR | TIOCM_RTS;
  free_slot->breaks = 0;
  return free_slot;
}

static int pty_slave_rdev(int fd, dev_t* rdev) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISCHR(st.st_mode) || !is_pty_slave_dev(st.st_rdev)) return 0;
  *rdev = st.st_rdev;
  return 1;
}

/* ---- interposed functions ---- */

typedef int (*ioctl_fn)(int, unsigned long, ...);
typedef int (*lstat_fn)(const char*, struct stat*);
typedef int (*lxstat_fn)(int, const char*, struct stat*);
typedef ssize_t (*readlink_fn)(const char*, char*, size_t);

SHIM_EXPORT int ioctl(int fd, unsigned long request, ...) {
  static ioctl_fn real_ioctl;
  if (real_ioctl == NULL) real_ioctl = (ioctl_fn)dlsym(RTLD_NEXT, "ioctl");
  va_list ap;
  va_start(ap, request);
  void* arg = va_arg(ap, void*);
  va_end(ap);

  dev_t rdev;
  switch (request) {
    case TIOCMGET:
    case TIOCMSET:
    case TIOCMBIS:
    case TIOCMBIC: {
      if (!pty_slave_rdev(fd, &rdev)) break;
      int* bits = (int*)arg;
      if (bits == NULL) {
        errno = EFAULT;
        return -1;
      }
      pthread_mutex_lock(&g_lock);
      struct pty_state* s = state_for(rdev);
      if (s == NULL) {
        pthread_mutex_unlock(&g_lock);
        errno = ENOMEM;
        return -1;
      }
      if (request == TIOCMGET)
        *bits = s->bits;
      else if (request == TIOCMSET)
        s->bits = *bits;
      else if (request == TIOCMBIS)
        s->bits |= *bits;
      else
        s->bits &= ~*bits;
      pthread_mutex_unlock(&g_lock);
      return 0;
    }
    case TIOCSBRK:
      if (pty_slave_rdev(fd, &rdev)) {
        pthread_mutex_lock(&g_lock);
        struct pty_state* s = state_for(rdev);
        if (s != NULL) ++s->breaks;
        pthread_mutex_unlock(&g_lock);
      }
      break;
    default:
      break;
  }
  return real_ioctl(fd, request, arg);
}

SHIM_EXPORT int lstat(const char* path, struct stat* st) {
  static lstat_fn real_lstat;
  if (sys_pts_number(path) >= 0) {
    fake_link_stat(st);
    return 0;
  }
  if (real_lstat == NULL) real_lstat = (lstat_fn)dlsym(RTLD_NEXT, "lstat");
  return real_lstat(path, st);
}

/* libserialport 0.1.1 as built for bookworm calls the pre-2.33 glibc entry point. */
SHIM_EXPORT int __lxstat(int ver, const char* path, struct stat* st) {
  static lxstat_fn real_lxstat;
  if (sys_pts_number(path) >= 0) {
    fake_link_stat(st);
    return 0;
  }
  if (real_lxstat == NULL) real_lxstat = (lxstat_fn)dlsym(RTLD_NEXT, "__lxstat");
  return real_lxstat(ver, path, st);
}

SHIM_EXPORT ssize_t readlink(const char* path, char* buf, size_t size) {
  static readlink_fn real_readlink;
  long n = sys_pts_number(path);
  if (n >= 0) {
    char target[128];
    int len = snprintf(target, sizeof target, "../../devices/virtual/tty/pts/%ld", n);
    if (len < 0) {
      errno = EINVAL;
      return -1;
    }
    size_t copy = (size_t)len < size ? (size_t)len : size;
    memcpy(buf, target, copy); /* readlink does not terminate */
    return (ssize_t)copy;
  }
  if (real_readlink == NULL) real_readlink = (readlink_fn)dlsym(RTLD_NEXT, "readlink");
  return real_readlink(path, buf, size);
}

/* ---- test hooks ---- */

static int rdev_of_path(const char* path, dev_t* rdev) {
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISCHR(st.st_mode)) return 0;
  *rdev = st.st_rdev;
  return 1;
}

SHIM_EXPORT unsigned otarig_pty_shim_modem_bits(const char* pts_path) {
  dev_t rdev;
  if (!rdev_of_path(pts_path, &rdev)) return 0;
  pthread_mutex_lock(&g_lock);
  struct pty_state* s = state_for(rdev);
  unsigned bits = s ? (unsigned)s->bits : 0;
  pthread_mutex_unlock(&g_lock);
  return bits;
}

SHIM_EXPORT unsigned otarig_pty_shim_break_count(const char* pts_path) {
  dev_t rdev;
  if (!rdev_of_path(pts_path, &rdev)) return 0;
  pthread_mutex_lock(&g_lock);
  struct pty_state* s = state_for(rdev);
  unsigned n = s ? s->breaks : 0;
  pthread_mutex_unlock(&g_lock);
  return n;
}
