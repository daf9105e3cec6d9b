#include "filemap.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/stat.h>

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
