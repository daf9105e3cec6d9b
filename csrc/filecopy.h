#ifndef CSFAST_FILECOPY_H
#define CSFAST_FILECOPY_H

#include <stdint.h>

/* Copies length bytes of file src_fd at src_offset to file dst_fd at
 * dst_offset, without moving either descriptor's file position. The kernel
 * copies them (copy_file_range: no trip through user memory; on a file
 * system with reflinks, no data copied at all) where it can; where it
 * cannot (EXDEV, ENOSYS, EINVAL, EOPNOTSUPP: another file system, an old
 * kernel), the rest goes through a read/write loop. With
 * CSF_COPY_NO_KERNEL in flags, all of it does. dst_fd must not be opened
 * with O_APPEND (writes would land at its end).
 *
 * *copied: bytes copied, also on failure; *by_kernel: how many of them
 * copy_file_range did. CSF_ESHORT if the source ends first; CSF_ESYS with
 * *err = errno on any other failure (ENOSPC, EIO, EBADF...). */
#define CSF_COPY_NO_KERNEL 1

int csf_copy_file_range(int src_fd, int64_t src_offset, int64_t length, int dst_fd,
                        int64_t dst_offset, int flags, int64_t *copied, int64_t *by_kernel,
                        int *err);

#endif
