/* A pool of pipes for the splice relay: a direction holds a pipe only while bytes are in
 * flight, so idle connections hold none and busy ones skip pipe2() most of the time. */
#include "pipepool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

static struct np_pipe *idle;
static int nidle, max_idle = 256;
static size_t pipe_size = 64 * 1024;

void np_pipepool_configure(size_t size, int keep)
{
    np_pipepool_free();
    pipe_size = size;
    max_idle = keep;
}

size_t np_pipepool_pipe_size(void)
{
    return pipe_size;
}

int np_pipe_get(struct np_pipe *p)
{
    int fds[2];

    if (nidle > 0) {
        *p = idle[--nidle];
        return 0;
    }
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) return -1;
    /* Best effort: the kernel caps it at /proc/sys/fs/pipe-max-size. */
    if (pipe_size != 64 * 1024) {
        int got = fcntl(fds[1], F_SETPIPE_SZ, (int)pipe_size);
        if (got > 0) pipe_size = got;
    }
    p->rfd = fds[0];
    p->wfd = fds[1];
    return 0;
}

void np_pipe_put(struct np_pipe *p)
{
    if (!idle) idle = calloc(max_idle > 0 ? max_idle : 1, sizeof *idle);
    if (idle && nidle < max_idle) {
        idle[nidle++] = *p;
    } else {
        np_pipe_discard(p);
    }
    p->rfd = p->wfd = -1;
}

void np_pipe_discard(struct np_pipe *p)
{
    if (p->rfd >= 0) close(p->rfd);
    if (p->wfd >= 0) close(p->wfd);
    p->rfd = p->wfd = -1;
}

void np_pipepool_free(void)
{
    while (nidle > 0) np_pipe_discard(&idle[--nidle]);
    free(idle);
    idle = NULL;
}

ssize_t np_pipe_fill(struct np_pipe *p, int from_fd, size_t len)
{
    ssize_t n;

    do {
        n = splice(from_fd, NULL, p->wfd, NULL, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    } while (n < 0 && errno == EINTR);
    return n;
}

ssize_t np_pipe_drain(struct np_pipe *p, int to_fd, size_t len)
{
    ssize_t n;

    do {
        n = splice(p->rfd, NULL, to_fd, NULL, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    } while (n < 0 && errno == EINTR);
    return n;
}
