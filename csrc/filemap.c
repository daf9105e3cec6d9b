#include "filemap.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "status.h"

int csf_map_file(int fd, int64_t size, void **out, int *err)
{
    if (size <= 0 || (uint64_t)size > SIZE_MAX || out == NULL || err == NULL)
        return CSF_EINVAL;
    /* Pages past the end of the file would raise SIGBUS when read. */
    struct stat st;
    if (fstat(fd, &st) != 0) {
        *err = errno;
        return CSF_ESYS;
    }
    if ((int64_t)st.st_size < size)
        return CSF_ESHORT;
    void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
        *err = errno;
        return CSF_ESYS;
    }
    *out = p;
    return CSF_OK;
}

int csf_map_writable(void *addr, int64_t size, int *err)
{
    if (addr == NULL || size <= 0 || err == NULL)
        return CSF_EINVAL;
    if (mprotect(addr, (size_t)size, PROT_READ | PROT_WRITE) != 0) {
        *err = errno;
        return CSF_ESYS;
    }
    return CSF_OK;
}

int csf_unmap(void *addr, int64_t size, int *err)
{
    if (addr == NULL || size <= 0 || err == NULL)
        return CSF_EINVAL;
    if (munmap(addr, (size_t)size) != 0) {
        *err = errno;
        return CSF_ESYS;
    }
    return CSF_OK;
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14; older headers lack it */
#endif

int csf_map_advise(void *addr, int64_t size, int64_t offset, int64_t length, int kind, int *err)
{
    static const int advice[] = {MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED,
                                 MADV_POPULATE_READ};
    if (addr == NULL || err == NULL || size <= 0 || offset < 0 || length < 0 ||
        offset > size || length > size - offset || kind < 0 ||
        kind >= (int)(sizeof advice / sizeof advice[0]))
        return CSF_EINVAL;
    if (length == 0)
        return CSF_OK;
    /* madvise wants a page-aligned start; the map itself starts on a page. */
    long page = sysconf(_SC_PAGESIZE);
    int64_t start = page > 0 ? offset - offset % page : offset;
    if (madvise((char *)addr + start, (size_t)(offset + length - start), advice[kind]) != 0) {
        *err = errno;
        return CSF_ESYS;
    }
    return CSF_OK;
}
