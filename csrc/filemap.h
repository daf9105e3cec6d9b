#ifndef CSFAST_FILEMAP_H
#define CSFAST_FILEMAP_H

#include <stdint.h>

/* Memory maps of files that outlive their file descriptor.
 *
 * A map is private (copy-on-write) and read-only when made: the caller may
 * close the descriptor at once, and the file's pages stay shared with the
 * page cache until written. csf_map_writable makes the pages writable
 * (still private: writes never reach the file); it is a separate step so
 * that only a map that is written to is charged against the commit limit.
 * csf_map_file returns CSF_ESHORT if the file holds fewer than size bytes.
 * On CSF_ESYS, *err holds errno. */

int csf_map_file(int fd, int64_t size, void **out, int *err);
int csf_map_writable(void *addr, int64_t size, int *err);
int csf_unmap(void *addr, int64_t size, int *err);

/* How a range of a map will be read (csf_map_advise). */
enum {
    CSF_ADVISE_NORMAL = 0,     /* the kernel's default read-ahead and fault-around */
    CSF_ADVISE_RANDOM = 1,     /* no read-ahead, no fault-around: each fault maps one page */
    CSF_ADVISE_SEQUENTIAL = 2, /* aggressive read-ahead; pages behind may be dropped early */
    CSF_ADVISE_WILLNEED = 3,   /* start reading the range into the page cache now */
    CSF_ADVISE_POPULATE = 4,   /* map every page of the range now (read from disk if needed),
                                * one call instead of a page fault per few pages */
};

/* madvise bytes [offset, offset + length) of a map of size bytes made by
 * csf_map_file (widened to whole pages). CSF_EINVAL for a range outside the
 * map or an unknown kind; CSF_ESYS with *err = errno if the kernel refuses
 * (EINVAL for POPULATE before Linux 5.14). */
int csf_map_advise(void *addr, int64_t size, int64_t offset, int64_t length, int kind, int *err);

#endif
