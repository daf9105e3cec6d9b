#include "filecopy.h"

#include <errno.h>
#include <unistd.h>

#include "status.h"

/* Bytes asked of one copy_file_range call (a large request holds the
 * inode locks long) and the read/write loop's buffer. */
#define KERNEL_CHUNK ((int64_t)1 << 30)
#define BUFFER_BYTES ((size_t)1 << 20)

/* The errors that mean "this kernel or file system pair cannot do it", not
 * "the copy failed". */
static int unsupported(int e)
{
    return e == EXDEV || e == ENOSYS || e == EINVAL || e == EOPNOTSUPP;
}

static int copy_by_buffer(int src_fd, off_t src, int64_t length, int dst_fd, off_t dst,
                          int64_t *copied, int *err)
{
    char *buf = malloc(BUFFER_BYTES);
    if (buf == NULL)
        return CSF_ENOMEM;
    int status = CSF_OK;
    while (*copied < length) {
        int64_t left = length - *copied;
        size_t want = left < (int64_t)BUFFER_BYTES ? (size_t)left : BUFFER_BYTES;
        ssize_t got = pread(src_fd, buf, want, src + *copied);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            *err = errno;
            status = CSF_ESYS;
            break;
        }
        if (got == 0) {
            status = CSF_ESHORT;
            break;
        }
        ssize_t done = 0;
        while (done < got) {
            ssize_t w = pwrite(dst_fd, buf + done, (size_t)(got - done), dst + *copied + done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                *err = w < 0 ? errno : EIO;
                status = CSF_ESYS;
                break;
            }
            done += w;
        }
        *copied += done;
        if (status != CSF_OK)
            break;
    }
    free(buf);
    return status;
}

int csf_copy_file_range(int src_fd, int64_t src_offset, int64_t length, int dst_fd,
                        int64_t dst_offset, int flags, int64_t *copied, int64_t *by_kernel,
                        int *err)
{
    if (copied == NULL || by_kernel == NULL || err == NULL || src_offset < 0 || length < 0 ||
        dst_offset < 0 || length > INT64_MAX - src_offset || length > INT64_MAX - dst_offset)
        return CSF_EINVAL;
    *copied = *by_kernel = 0;
    if (!(flags & CSF_COPY_NO_KERNEL)) {
        while (*copied < length) {
            off_t src = (off_t)(src_offset + *copied), dst = (off_t)(dst_offset + *copied);
            int64_t left = length - *copied;
            ssize_t got = copy_file_range(src_fd, &src, dst_fd, &dst,
                                          (size_t)(left < KERNEL_CHUNK ? left : KERNEL_CHUNK), 0);
            if (got < 0 && errno == EINTR)
                continue;
            if (got < 0 && unsupported(errno))
                break; /* the rest by read/write, from where the kernel stopped */
            if (got < 0) {
                *err = errno;
                return CSF_ESYS;
            }
            if (got == 0)
                return CSF_ESHORT;
            *copied += got;
            *by_kernel += got;
        }
    }
    return copy_by_buffer(src_fd, (off_t)src_offset, length, dst_fd, (off_t)dst_offset, copied,
                          err);
}
