/* scratchpack static runtime: the executable's own path as a read-only directory.
 *
 * Why: a module's __file__ is <exe>/<pkg>/<mod>.pyc (zipimport), so apps read package data with
 * open(os.path.join(os.path.dirname(__file__), "data.txt")), and certifi.where() hands
 * <exe>/certifi/cacert.pem to OpenSSL's fopen(). The kernel sees a regular file there
 * (ENOTDIR), and a scratch root has no /proc and no writable /tmp to copy members to.
 *
 * How: every libc call below is wrapped at link time (-Wl,--wrap=NAME), so libpython, OpenSSL
 * and the app's built-ins all come here. A path strictly under "<exe>/" (normalised; ".."
 * refused) names a STORED member of the zip appended to the executable, or a directory (a
 * member prefix). A member opens as a sealed memfd holding its bytes (no /proc, no writable
 * file system, no executable mapping); any write access is EROFS. Every other path goes to the
 * real function untouched.
 *
 * Directories answer stat() only once the launcher sets scratchpack_selfdir_dirs (after the
 * interpreter started and the bootstrap's path hook took over <exe>/<pkg> paths): zipimport
 * finds its archive by stat()-ing up from <exe>/<pkg> until it meets a regular file.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

int __real_open(const char *path, int flags, ...);
int __real_openat(int dirfd, const char *path, int flags, ...);
FILE *__real_fopen(const char *restrict path, const char *restrict mode);
int __real_stat(const char *restrict path, struct stat *restrict st);
int __real_lstat(const char *restrict path, struct stat *restrict st);
int __real_fstatat(int dirfd, const char *restrict path, struct stat *restrict st, int flag);
int __real_access(const char *path, int mode);
int __real_faccessat(int dirfd, const char *path, int mode, int flag);
DIR *__real_opendir(const char *path);
struct dirent *__real_readdir(DIR *dir);
int __real_closedir(DIR *dir);

int scratchpack_selfdir_dirs;

struct member {
    const char *name; /* no trailing slash */
    uint32_t size;
    uint64_t data; /* absolute offset of the local header in the executable */
    int stored;
    int dir; /* the zip's own entry for a directory ("pkg/") */
};

static char self[PATH_MAX];
static size_t self_len;
static struct member *members;
static size_t n_members;
static struct stat self_stat;
static pthread_once_t loaded = PTHREAD_ONCE_INIT;

void scratchpack_selfdir_init(const char *exe) {
    size_t len = strlen(exe);
    if (len + 1 < sizeof self) {
        memcpy(self, exe, len + 1);
        self_len = len;
    }
}

static uint32_t le16(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t le32(const unsigned char *p) { return le16(p) | le16(p + 2) << 16; }

static int by_name(const void *a, const void *b) {
    return strcmp(((const struct member *)a)->name, ((const struct member *)b)->name);
}

/* The central directory of the zip at the end of the executable (no comment, no zip64: ours). */
static void load(void) {
    int fd = __real_open(self, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    unsigned char end[22];
    off_t size = lseek(fd, 0, SEEK_END);
    if (fstat(fd, &self_stat) != 0 || size < 22 || pread(fd, end, 22, size - 22) != 22 ||
        le32(end) != 0x06054b50) {
        close(fd);
        return;
    }
    uint32_t count = le16(end + 10), cd_size = le32(end + 12), cd_offset = le32(end + 16);
    off_t cd_pos = size - 22 - (off_t)cd_size;
    off_t base = cd_pos - (off_t)cd_offset; /* where the zip starts in the executable */
    unsigned char *cd = malloc(cd_size ? cd_size : 1);
    struct member *list = calloc(count ? count : 1, sizeof *list);
    char *names = malloc(cd_size ? cd_size : 1);
    if (cd == NULL || list == NULL || names == NULL || base < 0 ||
        pread(fd, cd, cd_size, cd_pos) != (ssize_t)cd_size) {
        free(cd), free(list), free(names), close(fd);
        return;
    }
    size_t n = 0, pos = 0, name_pos = 0;
    for (uint32_t i = 0; i < count && pos + 46 <= cd_size; i++) {
        const unsigned char *h = cd + pos;
        uint32_t name_len = le16(h + 28), extra = le16(h + 30), comment = le16(h + 32);
        if (le32(h) != 0x02014b50 || pos + 46 + name_len > cd_size) {
            break;
        }
        uint32_t len = name_len;
        while (len > 0 && h[46 + len - 1] == '/') {
            len--;
        }
        if (len > 0) {
            memcpy(names + name_pos, h + 46, len);
            names[name_pos + len] = '\0';
            list[n].name = names + name_pos;
            list[n].size = le32(h + 24);
            list[n].data = (uint64_t)base + le32(h + 42);
            list[n].stored = le16(h + 10) == 0;
            list[n].dir = name_len != len;
            name_pos += len + 1;
            n++;
        }
        pos += 46 + name_len + extra + comment;
    }
    free(cd);
    close(fd);
    qsort(list, n, sizeof *list, by_name);
    members = list;
    n_members = n;
}

enum { NONE, MEMBER, DIRECTORY };

/* The index of the first member whose name is >= key. */
static size_t lower_bound(const char *key) {
    size_t lo = 0, hi = n_members;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (strcmp(members[mid].name, key) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* Which member or directory `path` names: NONE for paths not under "<exe>/" (the real call
 * answers those); else MEMBER/DIRECTORY with *found set, or -1 with errno. `rel` gets the
 * normalised member name ("" for the archive's root), with room for one more "/". */
static int lookup(const char *path, char *rel, const struct member **found) {
    *found = NULL;
    if (self_len == 0 || path == NULL || strncmp(path, self, self_len) != 0 ||
        path[self_len] != '/') {
        return NONE;
    }
    pthread_once(&loaded, load);
    size_t out = 0;
    const char *p = path + self_len;
    int slash_end = 0;
    while (*p != '\0') {
        while (*p == '/') {
            p++;
        }
        const char *end = strchrnul(p, '/');
        size_t len = (size_t)(end - p);
        if (len == 0) {
            break;
        }
        slash_end = *end == '/';
        if (len == 2 && p[0] == '.' && p[1] == '.') {
            errno = ENOENT;
            return -1;
        }
        if (!(len == 1 && p[0] == '.')) {
            if (out + len + 3 >= PATH_MAX) {
                errno = ENAMETOOLONG;
                return -1;
            }
            if (out > 0) {
                rel[out++] = '/';
            }
            memcpy(rel + out, p, len);
            out += len;
        }
        p = end;
    }
    rel[out] = '\0';
    if (out == 0) {
        return DIRECTORY;
    }
    size_t i = lower_bound(rel);
    if (i < n_members && strcmp(members[i].name, rel) == 0) {
        if (members[i].dir) {
            return DIRECTORY;
        }
        if (slash_end) {
            errno = ENOTDIR;
            return -1;
        }
        *found = &members[i];
        return MEMBER;
    }
    rel[out] = '/';
    rel[out + 1] = '\0';
    i = lower_bound(rel);
    int is_dir = i < n_members && strncmp(members[i].name, rel, out + 1) == 0;
    rel[out] = '\0';
    if (is_dir) {
        return DIRECTORY;
    }
    errno = ENOENT;
    return -1;
}

static int fill_stat(int kind, const struct member *m, struct stat *st) {
    if (kind == DIRECTORY && !scratchpack_selfdir_dirs) {
        errno = ENOTDIR; /* what the kernel says: zipimport relies on it during start-up */
        return -1;
    }
    *st = self_stat;
    st->st_nlink = kind == DIRECTORY ? 2 : 1;
    st->st_mode = kind == DIRECTORY ? (S_IFDIR | 0555) : (S_IFREG | 0444);
    st->st_size = m != NULL ? (off_t)m->size : 0;
    st->st_ino = m != NULL ? (ino_t)(m - members) + 2 : 1;
    st->st_blocks = (st->st_size + 511) / 512;
    return 0;
}

/* A sealed memfd holding the member's bytes, at offset 0. */
static int open_member(const struct member *m, int flags) {
    if (!m->stored) {
        errno = EIO;
        return -1;
    }
    unsigned char local[30];
    int exe = __real_open(self, O_RDONLY | O_CLOEXEC);
    if (exe < 0) {
        return -1;
    }
    if (pread(exe, local, 30, (off_t)m->data) != 30 || le32(local) != 0x04034b50) {
        close(exe);
        errno = EIO;
        return -1;
    }
    off_t from = (off_t)m->data + 30 + le16(local + 26) + le16(local + 28);
    unsigned cloexec = (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0;
    int fd = memfd_create("scratchpack-member", MFD_ALLOW_SEALING | cloexec);
    if (fd < 0) {
        close(exe);
        return -1;
    }
    size_t left = m->size;
    while (left > 0) {
        ssize_t n = sendfile(fd, exe, &from, left);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) {
                continue;
            }
            close(exe), close(fd);
            errno = EIO;
            return -1;
        }
        left -= (size_t)n;
    }
    close(exe);
    lseek(fd, 0, SEEK_SET);
    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
    return fd;
}

static int open_path(int kind, const struct member *m, int flags) {
    if ((flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC))) {
        errno = EROFS;
        return -1;
    }
    if (kind == DIRECTORY) {
        errno = scratchpack_selfdir_dirs ? EISDIR : ENOTDIR;
        return -1;
    }
    if (flags & O_DIRECTORY) {
        errno = ENOTDIR;
        return -1;
    }
    return open_member(m, flags);
}

int __wrap_open(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;
    va_end(ap);
    char rel[PATH_MAX];
    const struct member *m;
    int kind = lookup(path, rel, &m);
    if (kind == NONE) {
        return __real_open(path, flags, mode);
    }
    return kind < 0 ? -1 : open_path(kind, m, flags);
}

int __wrap_openat(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;
    va_end(ap);
    char rel[PATH_MAX];
    const struct member *m;
    int kind = lookup(path, rel, &m);
    if (kind == NONE) {
        return __real_openat(dirfd, path, flags, mode);
    }
    return kind < 0 ? -1 : open_path(kind, m, flags);
}

FILE *__wrap_fopen(const char *restrict path, const char *restrict mode) {
    char rel[PATH_MAX];
    const struct member *m;
    int kind = lookup(path, rel, &m);
    if (kind == NONE) {
        return __real_fopen(path, mode);
    }
    if (kind < 0) {
        return NULL;
    }
    int writes = mode[0] != 'r' || strchr(mode, '+') != NULL;
    int fd = open_path(kind, m, (writes ? O_RDWR : O_RDONLY) | (strchr(mode, 'e') ? O_CLOEXEC : 0));
    if (fd < 0) {
        return NULL;
    }
    FILE *f = fdopen(fd, mode);
    if (f == NULL) {
        close(fd);
    }
    return f;
}

static int stat_path(int kind, const struct member *m, struct stat *st) {
    return kind < 0 ? -1 : fill_stat(kind, m, st);
}

int __wrap_stat(const char *restrict path, struct stat *restrict st) {
    char rel[PATH_MAX];
    const struct member *m;
    int kind = lookup(path, rel, &m);
    return kind == NONE ? __real_stat(path, st) : stat_path(kind, m, st);
}

int __wrap_lstat(const char *restrict path, struct stat *restrict st) {
    char rel[PATH_MAX];
    const struct member *m;
    int kind = lookup(path, rel, &m);
    return kind == NONE ? __real_lstat(path, st) : stat_path(kind, m, st);
}

int __wrap_fstatat(int dirfd, const char *restrict path, struct stat *restrict st, int flag) {
    char rel[PATH_MAX];
    const struct member *m;
    int kind = lookup(path, rel, &m);
    return kind == NONE ? __real_fstatat(dirfd, path, st, flag) : stat_path(kind, m, st);
}

static int access_path(int kind, const struct member *m, int mode) {
    struct stat st;
    if (stat_path(kind, m, &st) != 0) {
        return -1;
    }
    if (mode & W_OK) {
        errno = EROFS;
        return -1;
    }
    if ((mode & X_OK) && kind == MEMBER) {
        errno = EACCES;
        return -1;
    }
    return 0;
}

int __wrap_access(const char *path, int mode) {
    char rel[PATH_MAX];
    const struct member *m;
    int kind = lookup(path, rel, &m);
    return kind == NONE ? __real_access(path, mode) : access_path(kind, m, mode);
}

int __wrap_faccessat(int dirfd, const char *path, int mode, int flag) {
    char rel[PATH_MAX];
    const struct member *m;
    int kind = lookup(path, rel, &m);
    return kind == NONE ? __real_faccessat(dirfd, path, mode, flag) : access_path(kind, m, mode);
}

/* A directory listing: this handle stands in for a DIR, told apart by the list of open ones. */
struct listing {
    struct listing *next;
    size_t at;
    size_t prefix_len;
    const char *last; /* the latest name returned, so "pkg/sub/a" and "pkg/sub/b" give one "sub" */
    size_t last_len;
    struct dirent entry;
    char prefix[]; /* "pkg/sub/", or "" for the root */
};

static struct listing *listings;
static pthread_mutex_t listings_lock = PTHREAD_MUTEX_INITIALIZER;

static struct listing *find_listing(DIR *dir, int unlink) {
    pthread_mutex_lock(&listings_lock);
    struct listing **link = &listings;
    while (*link != NULL && (DIR *)*link != dir) {
        link = &(*link)->next;
    }
    struct listing *found = *link;
    if (found != NULL && unlink) {
        *link = found->next;
    }
    pthread_mutex_unlock(&listings_lock);
    return found;
}

DIR *__wrap_opendir(const char *path) {
    char rel[PATH_MAX];
    const struct member *m;
    int kind = lookup(path, rel, &m);
    if (kind == NONE) {
        return __real_opendir(path);
    }
    if (kind < 0) {
        return NULL;
    }
    if (kind == MEMBER || !scratchpack_selfdir_dirs) {
        errno = ENOTDIR;
        return NULL;
    }
    size_t len = strlen(rel);
    struct listing *l = calloc(1, sizeof *l + len + 2);
    if (l == NULL) {
        return NULL;
    }
    memcpy(l->prefix, rel, len);
    if (len > 0) {
        l->prefix[len++] = '/';
    }
    l->prefix[len] = '\0';
    l->prefix_len = len;
    l->at = lower_bound(l->prefix);
    pthread_mutex_lock(&listings_lock);
    l->next = listings;
    listings = l;
    pthread_mutex_unlock(&listings_lock);
    return (DIR *)l;
}

struct dirent *__wrap_readdir(DIR *dir) {
    struct listing *l = find_listing(dir, 0);
    if (l == NULL) {
        return __real_readdir(dir);
    }
    while (l->at < n_members && strncmp(members[l->at].name, l->prefix, l->prefix_len) == 0) {
        const struct member *m = &members[l->at++];
        const char *name = m->name + l->prefix_len;
        size_t len = strcspn(name, "/");
        if (len == 0 || len >= sizeof l->entry.d_name ||
            (l->last != NULL && len == l->last_len && memcmp(name, l->last, len) == 0)) {
            continue;
        }
        l->last = name;
        l->last_len = len;
        memcpy(l->entry.d_name, name, len);
        l->entry.d_name[len] = '\0';
        l->entry.d_ino = (ino_t)(m - members) + 2;
        l->entry.d_type = (name[len] == '/' || m->dir) ? DT_DIR : DT_REG;
        l->entry.d_reclen = sizeof l->entry;
        return &l->entry;
    }
    return NULL;
}

int __wrap_closedir(DIR *dir) {
    struct listing *l = find_listing(dir, 1);
    if (l == NULL) {
        return __real_closedir(dir);
    }
    free(l);
    return 0;
}
