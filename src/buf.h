/* A byte buffer for the relay's copying path: one allocation, consumed from the front,
 * released when empty so that idle connections hold no memory. */
#ifndef NP_BUF_H
#define NP_BUF_H
#include <stddef.h>
#include <sys/types.h>

struct np_buf {
    char *data;
    size_t start, end, size;
};

static inline size_t np_buf_len(const struct np_buf *b) { return b->end - b->start; }

/* Appends len bytes, growing as needed. 0, or -1 when out of memory. */
int np_buf_append(struct np_buf *b, const void *p, size_t len);

/* Reads from fd until the buffer holds limit bytes or fd has nothing more to give now.
 * Returns bytes read (>0), 0 at EOF, -1 with errno (EAGAIN when nothing was ready). */
ssize_t np_buf_read_fd(struct np_buf *b, int fd, size_t limit);

/* Writes from the front of the buffer. Returns bytes sent or -1 with errno. */
ssize_t np_buf_write_fd(struct np_buf *b, int fd);

/* Room for up to want more bytes at the end: returns where to write them (commit what was
 * written with np_buf_commit), or NULL when out of memory. */
char *np_buf_space(struct np_buf *b, size_t want);
static inline void np_buf_commit(struct np_buf *b, size_t n) { b->end += n; }

/* Drops n bytes from the front (they were written elsewhere). */
void np_buf_consume(struct np_buf *b, size_t n);

/* Frees the memory; the buffer is empty afterwards. */
void np_buf_release(struct np_buf *b);

#endif
