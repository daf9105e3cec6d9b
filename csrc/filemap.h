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

#endif
