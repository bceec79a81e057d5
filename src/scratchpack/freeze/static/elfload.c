/* scratchpack static runtime: loads the musllinux extension modules bundled in this executable.
 *
 * Why: a static executable has no dynamic loader, and the app's compiled extensions (pydantic-core,
 * orjson, msgpack...) come as ELF shared objects from musllinux wheels. This file is that loader,
 * for exactly the objects the build put into the zip appended to the executable and checked
 * ahead of time (elf.py refuses at build time anything not handled here):
 *   - the object's bytes are read from the executable's own file (a STORED zip member): no /tmp,
 *     no /proc, no dlopen, no second process;
 *   - PT_LOAD segments go into one anonymous read-write mapping; after relocation each segment
 *     gets its own protection (never writable and executable at once), RELRO becomes read-only;
 *   - relocations: RELATIVE, 64, GLOB_DAT, JUMP_SLOT, DTPMOD64, DTPOFF64 and packed DT_RELR
 *     (x86-64; on aarch64 their R_AARCH64_ counterparts and TLSDESC), with the
 *     instruction cache made coherent for the code written (aarch64 does not snoop it);
 *   - symbols: the object and its DT_NEEDED bundled libraries first (breadth first, as an
 *     RTLD_LOCAL dlopen scope; DT_GNU_HASH lookups), then the table the build generated of the
 *     executable's symbols those objects import (scratchpack_symbols, sorted by name);
 *   - TLS for loaded objects through their own __tls_get_addr (general/local dynamic), with
 *     per-thread blocks allocated on first use, in every thread;
 *   - dl_iterate_phdr reports the loaded objects after the executable, so unwinders that look up
 *     frames by address (LLVM libunwind, libgcc_s without frame registration) find them;
 *   - init/init_array run after relocation, fini_array/fini at exit.
 * The Python side is the built-in module _scratchpack_ext: load(exe, member, deps) -> handle,
 * create(spec, handle) and exec(module), used by the bootstrap's meta-path finder the way
 * CPython's _imp.create_dynamic/exec_dynamic are by ExtensionFileLoader.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The relocation types applied, by the names the x86-64 psABI and elf.py use. */
#if defined(__x86_64__)
#define R_NONE R_X86_64_NONE
#define R_ABS64 R_X86_64_64
#define R_GLOB_DAT R_X86_64_GLOB_DAT
#define R_JUMP_SLOT R_X86_64_JUMP_SLOT
#define R_RELATIVE R_X86_64_RELATIVE
#define R_DTPMOD64 R_X86_64_DTPMOD64
#define R_DTPOFF64 R_X86_64_DTPOFF64
#define GOT_ADDEND 0 /* GLOB_DAT, JUMP_SLOT: S */
#elif defined(__aarch64__)
#define R_NONE R_AARCH64_NONE
#define R_ABS64 R_AARCH64_ABS64
#define R_GLOB_DAT R_AARCH64_GLOB_DAT
#define R_JUMP_SLOT R_AARCH64_JUMP_SLOT
#define R_RELATIVE R_AARCH64_RELATIVE
#define R_DTPMOD64 R_AARCH64_TLS_DTPMOD64
#define R_DTPOFF64 R_AARCH64_TLS_DTPREL64
#define GOT_ADDEND 1 /* GLOB_DAT, JUMP_SLOT: S + A */
#else
#error "scratchpack's loader handles x86-64 and aarch64 objects only"
#endif

struct scratchpack_symbol {
    const char *name;
    void *address;
};
extern const struct scratchpack_symbol scratchpack_symbols[];
extern const size_t scratchpack_nsymbols;

#define MAX_OBJECTS 256
#define MAX_SCOPE 64

struct object {
    char *path;
    unsigned char *base;
    size_t span;
    uintptr_t bias; /* run-time address minus link-time address */
    Elf64_Phdr *phdr;
    int phnum;
    const char *strtab;
    const Elf64_Sym *symtab;
    const uint16_t *versym;
    const uint32_t *gnu_hash;
    const uint32_t *sysv_hash;
    struct object *scope[MAX_SCOPE];
    int nscope;
    size_t tls_module; /* 0: no PT_TLS */
    const void *tls_image;
    size_t tls_filesz, tls_memsz, tls_align;
    void (**fini_array)(void);
    size_t fini_count;
    void (*fini)(void);
};

static struct object *objects[MAX_OBJECTS];
static _Atomic size_t n_objects;  /* published after an object is complete */
static struct object *tls_modules[MAX_OBJECTS + 1]; /* module id -> object */
static _Atomic size_t n_tls_modules;
static char error[512];

static int fail(const char *fmt, const char *what, const char *detail) {
    snprintf(error, sizeof error, fmt, what, detail);
    return -1;
}

/* ---- the zip member: where the object's bytes are inside the executable ---------------- */

static uint32_t le16(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t le32(const unsigned char *p) { return le16(p) | le16(p + 2) << 16; }

/* Offset and size of the STORED member `name` of the zip at the end of fd; -1 if absent. */
static off_t find_member(int fd, const char *name, size_t *size) {
    unsigned char end[22];
    off_t total = lseek(fd, 0, SEEK_END);
    if (total < 22 || pread(fd, end, 22, total - 22) != 22 || le32(end) != 0x06054b50) {
        return -1;
    }
    uint32_t count = le16(end + 10), cd_size = le32(end + 12), cd_offset = le32(end + 16);
    off_t cd_pos = total - 22 - (off_t)cd_size;
    off_t base = cd_pos - (off_t)cd_offset;
    unsigned char *cd = malloc(cd_size ? cd_size : 1);
    if (cd == NULL || base < 0 || pread(fd, cd, cd_size, cd_pos) != (ssize_t)cd_size) {
        free(cd);
        return -1;
    }
    size_t name_len = strlen(name), pos = 0;
    off_t found = -1;
    for (uint32_t i = 0; i < count && pos + 46 <= cd_size; i++) {
        const unsigned char *h = cd + pos;
        uint32_t len = le16(h + 28);
        if (le32(h) != 0x02014b50 || pos + 46 + len > cd_size) {
            break;
        }
        if (len == name_len && memcmp(h + 46, name, len) == 0 && le16(h + 10) == 0) {
            unsigned char local[30];
            off_t at = base + (off_t)le32(h + 42);
            if (pread(fd, local, 30, at) == 30 && le32(local) == 0x04034b50) {
                found = at + 30 + le16(local + 26) + le16(local + 28);
                *size = le32(h + 24);
            }
            break;
        }
        pos += 46 + len + le16(h + 30) + le16(h + 32);
    }
    free(cd);
    return found;
}

/* ---- symbol lookup ---------------------------------------------------------------------- */

static uint32_t gnu_hash(const char *s) {
    uint32_t h = 5381;
    for (; *s; s++) {
        h = h * 33 + (unsigned char)*s;
    }
    return h;
}

static uint32_t sysv_hash(const char *s) {
    uint32_t h = 0;
    for (; *s; s++) {
        h = (h << 4) + (unsigned char)*s;
        h ^= (h >> 24) & 0xf0;
    }
    return h & 0x0fffffff;
}

/* A definition another object may bind to: defined, global/weak/unique, visible, and the
 * default version (libgcc_s keeps hidden non-default duplicates such as __multc3@GCC_4.0.0). */
static int exported(const struct object *o, uint32_t i) {
    const Elf64_Sym *s = &o->symtab[i];
    int bind = ELF64_ST_BIND(s->st_info);
    int vis = ELF64_ST_VISIBILITY(s->st_other);
    return s->st_shndx != SHN_UNDEF && (bind == STB_GLOBAL || bind == STB_WEAK || bind == 10) &&
           (vis == STV_DEFAULT || vis == STV_PROTECTED) &&
           (o->versym == NULL || (o->versym[i] & 0x8000) == 0);
}

static const Elf64_Sym *find_in(const struct object *o, const char *name, uint32_t gh,
                                uint32_t sh) {
    if (o->gnu_hash != NULL) {
        const uint32_t *t = o->gnu_hash;
        uint32_t nbuckets = t[0], symoffset = t[1], bloom_size = t[2], shift = t[3];
        const uint64_t *bloom = (const uint64_t *)(t + 4);
        const uint32_t *buckets = (const uint32_t *)(bloom + bloom_size);
        const uint32_t *chain = buckets + nbuckets;
        uint64_t word = bloom[(gh / 64) % bloom_size];
        uint64_t mask = (1ULL << (gh % 64)) | (1ULL << ((gh >> shift) % 64));
        if ((word & mask) != mask) {
            return NULL;
        }
        uint32_t i = buckets[gh % nbuckets];
        if (i < symoffset) {
            return NULL;
        }
        for (;; i++) {
            uint32_t h2 = chain[i - symoffset];
            if ((gh | 1) == (h2 | 1) && strcmp(name, o->strtab + o->symtab[i].st_name) == 0 &&
                exported(o, i)) {
                return &o->symtab[i];
            }
            if (h2 & 1) {
                return NULL;
            }
        }
    }
    const uint32_t *t = o->sysv_hash;
    uint32_t nbucket = t[0];
    const uint32_t *bucket = t + 2, *chain = bucket + nbucket;
    for (uint32_t i = bucket[sh % nbucket]; i != 0; i = chain[i]) {
        if (strcmp(name, o->strtab + o->symtab[i].st_name) == 0 && exported(o, i)) {
            return &o->symtab[i];
        }
    }
    return NULL;
}

static int by_name(const void *key, const void *entry) {
    return strcmp((const char *)key, ((const struct scratchpack_symbol *)entry)->name);
}

void *scratchpack_tls_get_addr(size_t *index);

#if defined(__aarch64__)
/* TLSDESC (the aarch64 compilers' default TLS dialect): a relocated descriptor is {this
 * resolver, its {module, offset}}. Called with x0 = the descriptor, it returns in x0 the
 * variable's address minus the thread pointer and preserves every other register (the caller
 * saved none): x1-x18, x29, x30 and all of q0-q31 around the C call. */
__asm__(".text\n"
    ".p2align 2\n"
    ".global scratchpack_tlsdesc_dynamic\n"
    ".hidden scratchpack_tlsdesc_dynamic\n"
    ".type scratchpack_tlsdesc_dynamic, %function\n"
    "scratchpack_tlsdesc_dynamic:\n"
    "  stp x29, x30, [sp, #-160]!\n"
    "  mov x29, sp\n"
    "  stp x1, x2, [sp, #16]\n"
    "  stp x3, x4, [sp, #32]\n"
    "  stp x5, x6, [sp, #48]\n"
    "  stp x7, x8, [sp, #64]\n"
    "  stp x9, x10, [sp, #80]\n"
    "  stp x11, x12, [sp, #96]\n"
    "  stp x13, x14, [sp, #112]\n"
    "  stp x15, x16, [sp, #128]\n"
    "  stp x17, x18, [sp, #144]\n"
    "  sub sp, sp, #512\n"
    "  stp q0, q1, [sp, #0]\n"
    "  stp q2, q3, [sp, #32]\n"
    "  stp q4, q5, [sp, #64]\n"
    "  stp q6, q7, [sp, #96]\n"
    "  stp q8, q9, [sp, #128]\n"
    "  stp q10, q11, [sp, #160]\n"
    "  stp q12, q13, [sp, #192]\n"
    "  stp q14, q15, [sp, #224]\n"
    "  stp q16, q17, [sp, #256]\n"
    "  stp q18, q19, [sp, #288]\n"
    "  stp q20, q21, [sp, #320]\n"
    "  stp q22, q23, [sp, #352]\n"
    "  stp q24, q25, [sp, #384]\n"
    "  stp q26, q27, [sp, #416]\n"
    "  stp q28, q29, [sp, #448]\n"
    "  stp q30, q31, [sp, #480]\n"
    "  ldr x0, [x0, #8]\n"
    "  bl scratchpack_tls_get_addr\n"
    "  mrs x1, tpidr_el0\n"
    "  sub x0, x0, x1\n"
    "  ldp q0, q1, [sp, #0]\n"
    "  ldp q2, q3, [sp, #32]\n"
    "  ldp q4, q5, [sp, #64]\n"
    "  ldp q6, q7, [sp, #96]\n"
    "  ldp q8, q9, [sp, #128]\n"
    "  ldp q10, q11, [sp, #160]\n"
    "  ldp q12, q13, [sp, #192]\n"
    "  ldp q14, q15, [sp, #224]\n"
    "  ldp q16, q17, [sp, #256]\n"
    "  ldp q18, q19, [sp, #288]\n"
    "  ldp q20, q21, [sp, #320]\n"
    "  ldp q22, q23, [sp, #352]\n"
    "  ldp q24, q25, [sp, #384]\n"
    "  ldp q26, q27, [sp, #416]\n"
    "  ldp q28, q29, [sp, #448]\n"
    "  ldp q30, q31, [sp, #480]\n"
    "  add sp, sp, #512\n"
    "  ldp x1, x2, [sp, #16]\n"
    "  ldp x3, x4, [sp, #32]\n"
    "  ldp x5, x6, [sp, #48]\n"
    "  ldp x7, x8, [sp, #64]\n"
    "  ldp x9, x10, [sp, #80]\n"
    "  ldp x11, x12, [sp, #96]\n"
    "  ldp x13, x14, [sp, #112]\n"
    "  ldp x15, x16, [sp, #128]\n"
    "  ldp x17, x18, [sp, #144]\n"
    "  ldp x29, x30, [sp], #160\n"
    "  ret\n"
    ".size scratchpack_tlsdesc_dynamic, .-scratchpack_tlsdesc_dynamic\n");
extern char scratchpack_tlsdesc_dynamic[];
#endif
int scratchpack_dl_iterate_phdr(int (*cb)(struct dl_phdr_info *, size_t, void *), void *data);

/* Resolve `name` for object `o`: its scope, then the loader's own answers, then the table.
 * Sets *where to the defining object (NULL: the executable); returns 0 if not found. */
static int resolve(const struct object *o, const char *name, uintptr_t *value,
                   const struct object **where) {
    uint32_t gh = gnu_hash(name), sh = sysv_hash(name);
    for (int k = 0; k < o->nscope; k++) {
        const Elf64_Sym *s = find_in(o->scope[k], name, gh, sh);
        if (s != NULL) {
            *where = o->scope[k];
            *value = ELF64_ST_TYPE(s->st_info) == STT_TLS ? s->st_value
                                                          : o->scope[k]->bias + s->st_value;
            return 1;
        }
    }
    *where = NULL;
    if (strcmp(name, "__tls_get_addr") == 0) {
        *value = (uintptr_t)scratchpack_tls_get_addr;
        return 1;
    }
    if (strcmp(name, "dl_iterate_phdr") == 0) {
        *value = (uintptr_t)scratchpack_dl_iterate_phdr;
        return 1;
    }
    const struct scratchpack_symbol *e =
        bsearch(name, scratchpack_symbols, scratchpack_nsymbols, sizeof *e, by_name);
    if (e != NULL) {
        *value = (uintptr_t)e->address;
        return 1;
    }
    return 0;
}

/* ---- relocation ------------------------------------------------------------------------- */

static int relocate_rela(struct object *o, const Elf64_Rela *rel, size_t count) {
    for (size_t i = 0; i < count; i++) {
        uint32_t type = ELF64_R_TYPE(rel[i].r_info), index = ELF64_R_SYM(rel[i].r_info);
        uint64_t *where = (uint64_t *)(o->bias + rel[i].r_offset);
        uintptr_t value = 0;
        const struct object *owner = o;
        const Elf64_Sym *sym = index ? &o->symtab[index] : NULL;
        if (type == R_RELATIVE) {
            *where = o->bias + (uint64_t)rel[i].r_addend;
            continue;
        }
        if (type == R_NONE) {
            continue;
        }
        if (sym != NULL) {
            const char *name = o->strtab + sym->st_name;
            if (ELF64_ST_BIND(sym->st_info) == STB_LOCAL) {
                value = ELF64_ST_TYPE(sym->st_info) == STT_TLS ? sym->st_value
                                                               : o->bias + sym->st_value;
            } else if (!resolve(o, name, &value, &owner)) {
                if (ELF64_ST_BIND(sym->st_info) != STB_WEAK) {
                    return fail("%s: undefined symbol %s", o->path, name);
                }
                value = 0;
                owner = o;
            }
        }
        switch (type) {
        case R_ABS64:
            *where = value + (uint64_t)rel[i].r_addend;
            break;
        case R_GLOB_DAT:
        case R_JUMP_SLOT:
            *where = value + (GOT_ADDEND ? (uint64_t)rel[i].r_addend : 0);
            break;
        case R_DTPMOD64:
            if (owner == NULL || owner->tls_module == 0) {
                return fail("%s: TLS module reference to %s, which has no PT_TLS", o->path,
                            sym ? o->strtab + sym->st_name : "itself");
            }
            *where = owner->tls_module;
            break;
        case R_DTPOFF64:
            *where = (sym != NULL ? value : 0) + (uint64_t)rel[i].r_addend;
            break;
#if defined(__aarch64__)
        case R_AARCH64_TLSDESC: {
            size_t *arg = malloc(2 * sizeof *arg); /* lives as long as the object */
            if (owner == NULL || owner->tls_module == 0 || arg == NULL) {
                free(arg);
                return fail("%s: TLS descriptor for %s, which has no PT_TLS", o->path,
                            sym ? o->strtab + sym->st_name : "itself");
            }
            arg[0] = owner->tls_module;
            arg[1] = (sym != NULL ? value : 0) + (uint64_t)rel[i].r_addend;
            where[0] = (uint64_t)(uintptr_t)scratchpack_tlsdesc_dynamic;
            where[1] = (uint64_t)(uintptr_t)arg;
            break;
        }
#endif
        default: {
            char kind[16];
            snprintf(kind, sizeof kind, "%u", type);
            return fail("%s: unsupported relocation type %s", o->path, kind);
        }
        }
    }
    return 0;
}

/* DT_RELR: an address entry relocates one word and sets the base; a bitmap entry (low bit
 * set) relocates the following 63 words whose bits are set. */
static void relocate_relr(struct object *o, const uint64_t *relr, size_t count) {
    uint64_t *where = NULL;
    for (size_t i = 0; i < count; i++) {
        uint64_t entry = relr[i];
        if ((entry & 1) == 0) {
            where = (uint64_t *)(o->bias + entry);
            *where++ += o->bias;
        } else {
            for (int bit = 0; (entry >>= 1) != 0; bit++) {
                if (entry & 1) {
                    where[bit] += o->bias;
                }
            }
            where += 63;
        }
    }
}

/* ---- mapping ---------------------------------------------------------------------------- */

static int prot_of(uint32_t flags) {
    return ((flags & PF_R) ? PROT_READ : 0) | ((flags & PF_W) ? PROT_WRITE : 0) |
           ((flags & PF_X) ? PROT_EXEC : 0);
}

static void run_fini(void) {
    for (size_t k = atomic_load(&n_objects); k-- > 0;) {
        struct object *o = objects[k];
        for (size_t i = o->fini_count; i-- > 0;) {
            if (o->fini_array[i] != NULL && o->fini_array[i] != (void (*)(void))-1) {
                o->fini_array[i]();
            }
        }
        if (o->fini != NULL) {
            o->fini();
        }
    }
}

/* Whether read-only PT_LOAD i can be a private mapping of the executable's file instead of a
 * copy: the bundler puts an object's bytes at a page boundary of the file, so its offsets
 * match its addresses modulo the page as a dynamic loader needs. Only what is never written
 * (elf.py refuses text relocations) and shares no page with a writable segment: the pages are
 * then read on demand from the page cache, shared between processes, and never copied. */
static int file_mappable(const Elf64_Phdr *ph, int phnum, int i, off_t at, size_t page) {
    if ((ph[i].p_flags & PF_W) || ph[i].p_memsz != ph[i].p_filesz ||
        ((uint64_t)at + ph[i].p_offset - ph[i].p_vaddr) % page != 0) {
        return 0;
    }
    uint64_t first = ph[i].p_vaddr & ~(uint64_t)(page - 1);
    uint64_t last = (ph[i].p_vaddr + ph[i].p_memsz + page - 1) & ~(uint64_t)(page - 1);
    for (int k = 0; k < phnum; k++) {
        if (ph[k].p_type == PT_LOAD && (ph[k].p_flags & PF_W)) {
            uint64_t wfirst = ph[k].p_vaddr & ~(uint64_t)(page - 1);
            uint64_t wlast = (ph[k].p_vaddr + ph[k].p_memsz + page - 1) & ~(uint64_t)(page - 1);
            if (wfirst < last && first < wlast) {
                return 0;
            }
        }
    }
    return 1;
}

static int load_object(const char *exe, const char *member, struct object **deps, int ndeps,
                       struct object **out) {
    int fd = open(exe, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return fail("cannot open %s: %s", exe, strerror(errno));
    }
    size_t size = 0;
    off_t at = find_member(fd, member, &size);
    Elf64_Ehdr eh;
    if (at < 0 || pread(fd, &eh, sizeof eh, at) != (ssize_t)sizeof eh ||
        memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_phentsize != sizeof(Elf64_Phdr)) {
        close(fd);
        return fail("%s%s: not a stored ELF member of this executable", exe, member);
    }
    struct object *o = calloc(1, sizeof *o);
    size_t path_len = strlen(exe) + 1 + strlen(member) + 1;
    Elf64_Phdr *ph = malloc(eh.e_phnum * sizeof *ph);
    if (o == NULL || ph == NULL || (o->path = malloc(path_len)) == NULL) {
        close(fd);
        return fail("%s%s: out of memory", member, "");
    }
    snprintf(o->path, path_len, "%s/%s", exe, member);
    if (pread(fd, ph, eh.e_phnum * sizeof *ph, at + (off_t)eh.e_phoff) !=
        (ssize_t)(eh.e_phnum * sizeof *ph)) {
        close(fd);
        return fail("%s: cannot read program headers%s", o->path, "");
    }
    o->phdr = ph;
    o->phnum = eh.e_phnum;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (int i = 0; i < o->phnum; i++) {
        if (ph[i].p_type == PT_LOAD) {
            lo = ph[i].p_vaddr < lo ? ph[i].p_vaddr : lo;
            hi = ph[i].p_vaddr + ph[i].p_memsz > hi ? ph[i].p_vaddr + ph[i].p_memsz : hi;
        }
    }
    lo &= ~(page - 1);
    hi = (hi + page - 1) & ~(page - 1);
    o->span = hi - lo;
    o->base = mmap(NULL, o->span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (o->base == MAP_FAILED) {
        close(fd);
        return fail("%s: cannot map memory: %s", o->path, strerror(errno));
    }
    o->bias = (uintptr_t)o->base - lo;
    Elf64_Dyn *dyn = NULL;
    unsigned char mapped[64] = {0}; /* PT_LOAD i mapped from the file (i < 64) */
    for (int i = 0; i < o->phnum; i++) {
        if (ph[i].p_type == PT_LOAD && ph[i].p_filesz > 0) {
            if (ph[i].p_offset + ph[i].p_filesz > size) {
                close(fd);
                return fail("%s: a segment lies outside its member%s", o->path, "");
            }
            if (i < 64 && file_mappable(ph, o->phnum, i, at, page)) {
                uintptr_t start = (o->bias + ph[i].p_vaddr) & ~(page - 1);
                off_t from = at + (off_t)(ph[i].p_offset & ~(page - 1));
                size_t len = o->bias + ph[i].p_vaddr + ph[i].p_filesz - start;
                if (mmap((void *)start, len, prot_of(ph[i].p_flags), MAP_PRIVATE | MAP_FIXED, fd,
                         from) == MAP_FAILED) {
                    close(fd);
                    return fail("%s: cannot map a segment: %s", o->path, strerror(errno));
                }
                mapped[i] = 1;
            } else if (pread(fd, (void *)(o->bias + ph[i].p_vaddr), ph[i].p_filesz,
                             at + (off_t)ph[i].p_offset) != (ssize_t)ph[i].p_filesz) {
                close(fd);
                return fail("%s: cannot read a segment%s", o->path, "");
            }
        } else if (ph[i].p_type == PT_DYNAMIC) {
            dyn = (Elf64_Dyn *)(o->bias + ph[i].p_vaddr);
        } else if (ph[i].p_type == PT_TLS) {
            o->tls_image = (const void *)(o->bias + ph[i].p_vaddr);
            o->tls_filesz = ph[i].p_filesz;
            o->tls_memsz = ph[i].p_memsz;
            o->tls_align = ph[i].p_align > sizeof(void *) ? ph[i].p_align : sizeof(void *);
        }
    }
    close(fd);
    if (dyn == NULL) {
        return fail("%s: no dynamic section%s", o->path, "");
    }
    const Elf64_Rela *rela = NULL, *jmprel = NULL;
    const uint64_t *relr = NULL;
    size_t relasz = 0, pltrelsz = 0, relrsz = 0, init_count = 0;
    void (*init)(void) = NULL;
    void (**init_array)(void) = NULL;
    for (Elf64_Dyn *d = dyn; d->d_tag != DT_NULL; d++) {
        uintptr_t ptr = o->bias + d->d_un.d_ptr;
        switch (d->d_tag) {
        case DT_STRTAB: o->strtab = (const char *)ptr; break;
        case DT_SYMTAB: o->symtab = (const Elf64_Sym *)ptr; break;
        case DT_VERSYM: o->versym = (const uint16_t *)ptr; break;
        case DT_GNU_HASH: o->gnu_hash = (const uint32_t *)ptr; break;
        case DT_HASH: o->sysv_hash = (const uint32_t *)ptr; break;
        case DT_RELA: rela = (const Elf64_Rela *)ptr; break;
        case DT_RELASZ: relasz = d->d_un.d_val; break;
        case DT_JMPREL: jmprel = (const Elf64_Rela *)ptr; break;
        case DT_PLTRELSZ: pltrelsz = d->d_un.d_val; break;
        case DT_RELR: relr = (const uint64_t *)ptr; break;
        case DT_RELRSZ: relrsz = d->d_un.d_val; break;
        case DT_INIT: init = (void (*)(void))ptr; break;
        case DT_FINI: o->fini = (void (*)(void))ptr; break;
        case DT_INIT_ARRAY: init_array = (void (**)(void))ptr; break;
        case DT_INIT_ARRAYSZ: init_count = d->d_un.d_val / sizeof(void *); break;
        case DT_FINI_ARRAY: o->fini_array = (void (**)(void))ptr; break;
        case DT_FINI_ARRAYSZ: o->fini_count = d->d_un.d_val / sizeof(void *); break;
        default: break;
        }
    }
    if (o->strtab == NULL || o->symtab == NULL || (o->gnu_hash == NULL && o->sysv_hash == NULL)) {
        return fail("%s: no symbol tables%s", o->path, "");
    }
    /* Scope: itself, then its dependencies' scopes in order, each object once. */
    o->scope[o->nscope++] = o;
    for (int d = 0; d < ndeps; d++) {
        for (int k = 0; k < deps[d]->nscope; k++) {
            int seen = 0;
            for (int j = 0; j < o->nscope; j++) {
                seen |= o->scope[j] == deps[d]->scope[k];
            }
            if (!seen && o->nscope < MAX_SCOPE) {
                o->scope[o->nscope++] = deps[d]->scope[k];
            }
        }
    }
    if (o->tls_memsz > 0 || o->tls_image != NULL) {
        size_t id = atomic_load(&n_tls_modules) + 1;
        if (id > MAX_OBJECTS) {
            return fail("%s: too many TLS modules%s", o->path, "");
        }
        o->tls_module = id;
        tls_modules[id] = o;
        atomic_store(&n_tls_modules, id);
    }
    if (relr != NULL) {
        relocate_relr(o, relr, relrsz / sizeof *relr);
    }
    if ((rela != NULL && relocate_rela(o, rela, relasz / sizeof *rela) != 0) ||
        (jmprel != NULL && relocate_rela(o, jmprel, pltrelsz / sizeof *jmprel) != 0)) {
        return -1;
    }
    /* The code copied was written through the data cache: make the instruction cache see it
     * (the kernel does that for the pages of a file mapping). */
    for (int i = 0; i < o->phnum; i++) {
        if (ph[i].p_type == PT_LOAD && (ph[i].p_flags & PF_X) && !(i < 64 && mapped[i])) {
            char *start = (char *)(o->bias + ph[i].p_vaddr);
            __builtin___clear_cache(start, start + ph[i].p_memsz);
        }
    }
    /* W^X: everything inaccessible, then each segment its own rights, RELRO read-only. */
    mprotect(o->base, o->span, PROT_NONE);
    for (int i = 0; i < o->phnum; i++) {
        if (ph[i].p_type == PT_LOAD) {
            uintptr_t start = (o->bias + ph[i].p_vaddr) & ~(page - 1);
            uintptr_t end = (o->bias + ph[i].p_vaddr + ph[i].p_memsz + page - 1) & ~(page - 1);
            if (mprotect((void *)start, end - start, prot_of(ph[i].p_flags)) != 0) {
                return fail("%s: mprotect: %s", o->path, strerror(errno));
            }
        }
    }
    for (int i = 0; i < o->phnum; i++) {
        if (ph[i].p_type == PT_GNU_RELRO) {
            uintptr_t start = (o->bias + ph[i].p_vaddr) & ~(page - 1);
            uintptr_t end = (o->bias + ph[i].p_vaddr + ph[i].p_memsz) & ~(page - 1);
            if (end > start) {
                mprotect((void *)start, end - start, PROT_READ);
            }
        }
    }
    size_t k = atomic_load(&n_objects);
    if (k >= MAX_OBJECTS) {
        return fail("%s: too many loaded objects%s", o->path, "");
    }
    objects[k] = o;
    atomic_store(&n_objects, k + 1);
    if (k == 0) {
        atexit(run_fini);
    }
    if (init != NULL) {
        init();
    }
    for (size_t i = 0; i < init_count; i++) {
        if (init_array[i] != NULL && init_array[i] != (void (*)(void))-1) {
            init_array[i]();
        }
    }
    *out = o;
    return 0;
}

/* ---- TLS for loaded objects ------------------------------------------------------------- */

static __thread void **tls_blocks;
static __thread size_t tls_nblocks;
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

/* Frees a thread's blocks on the LAST round of key destructors (musl runs up to
 * PTHREAD_DESTRUCTOR_ITERATIONS rounds while values are set): libstdc++'s and Rust's own
 * thread-exit destructors run in earlier rounds and may still touch their TLS. */
static void tls_free(void *round) {
    uintptr_t n = (uintptr_t)round;
    if (n < PTHREAD_DESTRUCTOR_ITERATIONS - 1) {
        pthread_setspecific(tls_key, (void *)(n + 1));
        return;
    }
    for (size_t i = 0; i < tls_nblocks; i++) {
        free(tls_blocks[i]);
    }
    free(tls_blocks);
    tls_blocks = NULL;
    tls_nblocks = 0;
}

static void tls_key_init(void) { pthread_key_create(&tls_key, tls_free); }

static void *tls_block(size_t module) {
    if (module >= tls_nblocks) {
        size_t n = atomic_load(&n_tls_modules) + 1;
        void **grown = realloc(tls_blocks, n * sizeof *grown);
        if (grown == NULL) {
            abort();
        }
        memset(grown + tls_nblocks, 0, (n - tls_nblocks) * sizeof *grown);
        if (tls_blocks == NULL) {
            pthread_once(&tls_once, tls_key_init);
            pthread_setspecific(tls_key, (void *)1);
        }
        tls_blocks = grown;
        tls_nblocks = n;
    }
    const struct object *o = tls_modules[module];
    size_t size = (o->tls_memsz + o->tls_align - 1) & ~(o->tls_align - 1);
    void *block = aligned_alloc(o->tls_align, size ? size : o->tls_align);
    if (block == NULL) {
        abort();
    }
    memcpy(block, o->tls_image, o->tls_filesz);
    memset((char *)block + o->tls_filesz, 0, size - o->tls_filesz);
    tls_blocks[module] = block;
    return block;
}

/* What loaded objects call as __tls_get_addr: index[0] module id, index[1] offset. */
void *scratchpack_tls_get_addr(size_t *index) {
    size_t module = index[0];
    void *block = module < tls_nblocks ? tls_blocks[module] : NULL;
    if (block == NULL) {
        block = tls_block(module);
    }
    return (char *)block + index[1];
}

/* What loaded objects call as dl_iterate_phdr: the executable (musl's own), then them. */
int scratchpack_dl_iterate_phdr(int (*cb)(struct dl_phdr_info *, size_t, void *), void *data) {
    int r = dl_iterate_phdr(cb, data);
    size_t n = atomic_load(&n_objects);
    for (size_t k = 0; r == 0 && k < n; k++) {
        const struct object *o = objects[k];
        struct dl_phdr_info info;
        memset(&info, 0, sizeof info);
        info.dlpi_addr = o->bias;
        info.dlpi_name = o->path;
        info.dlpi_phdr = o->phdr;
        info.dlpi_phnum = (ElfW(Half))o->phnum;
        info.dlpi_adds = n + 1;
        info.dlpi_tls_modid = o->tls_module;
        info.dlpi_tls_data = o->tls_module && o->tls_module < tls_nblocks
                                 ? tls_blocks[o->tls_module]
                                 : NULL;
        r = cb(&info, sizeof info, data);
    }
    return r;
}

/* ---- the Python module ------------------------------------------------------------------ */

static PyObject *ext_load(PyObject *self, PyObject *args) {
    const char *exe, *member;
    PyObject *deps;
    if (!PyArg_ParseTuple(args, "ssO!:load", &exe, &member, &PyTuple_Type, &deps)) {
        return NULL;
    }
    struct object *dep[MAX_SCOPE];
    Py_ssize_t ndeps = PyTuple_GET_SIZE(deps);
    if (ndeps > MAX_SCOPE) {
        PyErr_SetString(PyExc_ImportError, "too many dependencies");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < ndeps; i++) {
        size_t h = PyLong_AsSize_t(PyTuple_GET_ITEM(deps, i));
        if (h == (size_t)-1 && PyErr_Occurred()) {
            return NULL;
        }
        if (h >= atomic_load(&n_objects)) {
            PyErr_SetString(PyExc_ValueError, "unknown object handle");
            return NULL;
        }
        dep[i] = objects[h];
    }
    struct object *o = NULL;
    if (load_object(exe, member, dep, (int)ndeps, &o) != 0) {
        PyErr_Format(PyExc_ImportError, "cannot load %s: %s", member, error);
        return NULL;
    }
    for (size_t k = 0; k < atomic_load(&n_objects); k++) {
        if (objects[k] == o) {
            return PyLong_FromSize_t(k);
        }
    }
    PyErr_SetString(PyExc_SystemError, "loaded object not registered");
    return NULL;
}

typedef PyObject *(*init_function)(void);

/* As _PyImport_LoadDynamicModuleWithSpec: PyInit_<last name part> with the package context
 * set, then multi-phase (a PyModuleDef) or single-phase (a module) handling. */
static PyObject *ext_create(PyObject *self, PyObject *args) {
    PyObject *spec;
    Py_ssize_t handle;
    if (!PyArg_ParseTuple(args, "On:create", &spec, &handle)) {
        return NULL;
    }
    if (handle < 0 || (size_t)handle >= atomic_load(&n_objects)) {
        PyErr_SetString(PyExc_ValueError, "unknown object handle");
        return NULL;
    }
    struct object *o = objects[handle];
    PyObject *name = PyObject_GetAttrString(spec, "name");
    PyObject *origin = name ? PyObject_GetAttrString(spec, "origin") : NULL;
    if (origin == NULL) {
        Py_XDECREF(name);
        return NULL;
    }
    const char *full = PyUnicode_AsUTF8(name);
    if (full == NULL) {
        Py_DECREF(name);
        Py_DECREF(origin);
        return NULL;
    }
    const char *dot = strrchr(full, '.');
    const char *last = dot ? dot + 1 : full;
    char hook[256];
    snprintf(hook, sizeof hook, "PyInit_%s", last);
    const Elf64_Sym *s = find_in(o, hook, gnu_hash(hook), sysv_hash(hook));
    if (s == NULL || ELF64_ST_TYPE(s->st_info) != STT_FUNC) {
        PyErr_Format(PyExc_ImportError, "dynamic module does not define module export function (%s)",
                     hook);
        Py_DECREF(name);
        Py_DECREF(origin);
        return NULL;
    }
    init_function init = (init_function)(o->bias + s->st_value);
    const char *old = _Py_PackageContext;
    _Py_PackageContext = full;
    PyObject *m = init();
    _Py_PackageContext = old;
    if (m == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_SystemError, "initialization of %s failed without raising an "
                         "exception", last);
        }
        goto done;
    }
    if (PyErr_Occurred()) {
        Py_CLEAR(m);
        PyErr_Format(PyExc_SystemError, "initialization of %s raised unreported exception",
                     last);
        goto done;
    }
    if (PyObject_TypeCheck(m, &PyModuleDef_Type)) {
        PyObject *mod = PyModule_FromDefAndSpec((PyModuleDef *)m, spec);
        m = mod;
        goto done;
    }
    PyModuleDef *def = PyModule_GetDef(m);
    if (def == NULL) {
        PyErr_Format(PyExc_SystemError, "initialization of %s did not return an extension module",
                     last);
        Py_CLEAR(m);
        goto done;
    }
    def->m_base.m_init = init;
    if (PyModule_AddObjectRef(m, "__file__", origin) < 0) {
        PyErr_Clear();
    }
    PyObject *modules = PyImport_GetModuleDict();
    if (_PyImport_FixupExtensionObject(m, name, origin, modules) < 0) {
        Py_CLEAR(m);
    }
done:
    Py_DECREF(name);
    Py_DECREF(origin);
    return m;
}

/* As _imp.exec_dynamic: run a multi-phase module's exec slots, once. */
static PyObject *ext_exec(PyObject *self, PyObject *mod) {
    if (!PyModule_Check(mod)) {
        Py_RETURN_NONE;
    }
    PyModuleDef *def = PyModule_GetDef(mod);
    if (def == NULL || PyModule_GetState(mod) != NULL) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (PyModule_ExecDef(mod, def) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef ext_methods[] = {
    {"load", ext_load, METH_VARARGS,
     "load(exe, member, deps) -> handle: map, relocate and initialise a bundled ELF object"},
    {"create", ext_create, METH_VARARGS,
     "create(spec, handle) -> module: call the object's PyInit_ function"},
    {"exec", ext_exec, METH_O, "exec(module): run a multi-phase module's exec slots"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef ext_module = {
    PyModuleDef_HEAD_INIT, "_scratchpack_ext",
    "Loads the extension modules bundled in this executable (elfload.c).", -1, ext_methods,
};

PyObject *PyInit__scratchpack_ext(void) { return PyModule_Create(&ext_module); }
