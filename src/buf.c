/* A byte buffer for the relay's copying path: one allocation, consumed from the front,
 * released when empty so that idle connections hold no memory. */
#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Makes room for want more bytes at the end: first by moving the data to the front,
 * then by growing. */
static int reserve(struct np_buf *b, size_t want)
{
    size_t len = np_buf_len(b), size;
    char *data;

    if (b->size - b->end >= want) return 0;
    if (b->start > 0 && b->size - len >= want) {
        memmove(b->data, b->data + b->start, len);
        b->start = 0;
        b->end = len;
        return 0;
    }
    size = b->size ? b->size : 16 * 1024;
    while (size - len < want) size *= 2;
    if (b->start > 0) {
        memmove(b->data, b->data + b->start, len);
        b->start = 0;
        b->end = len;
    }
    data = realloc(b->data, size);
    if (!data) return -1;
    b->data = data;
    b->size = size;
    return 0;
}

int np_buf_append(struct np_buf *b, const void *p, size_t len)
{
    if (len == 0) return 0;
    if (reserve(b, len) < 0) return -1;
    memcpy(b->data + b->end, p, len);
    b->end += len;
    return 0;
}

ssize_t np_buf_read_fd(struct np_buf *b, int fd, size_t limit)
{
    size_t len = np_buf_len(b);
    ssize_t n;

    if (len >= limit) {
        errno = ENOBUFS;
        return -1;
    }
    if (reserve(b, limit - len) < 0) return -1;
    do {
        n = read(fd, b->data + b->end, limit - len);
    } while (n < 0 && errno == EINTR);
    if (n > 0) b->end += n;
    return n;
}

ssize_t np_buf_write_fd(struct np_buf *b, int fd)
{
    ssize_t n;

    do {
        n = write(fd, b->data + b->start, np_buf_len(b));   /* SIGPIPE is ignored */
    } while (n < 0 && errno == EINTR);
    if (n > 0) np_buf_consume(b, n);
    return n;
}

char *np_buf_space(struct np_buf *b, size_t want)
{
    return reserve(b, want) < 0 ? NULL : b->data + b->end;
}

void np_buf_consume(struct np_buf *b, size_t n)
{
    b->start += n;
    if (b->start == b->end) b->start = b->end = 0;
}

void np_buf_release(struct np_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->start = b->end = b->size = 0;
}
