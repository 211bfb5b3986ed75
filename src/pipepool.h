/* A pool of pipes for the splice relay: a direction holds a pipe only while bytes are in
 * flight, so idle connections hold none. */
#ifndef NP_PIPEPOOL_H
#define NP_PIPEPOOL_H
#include <stddef.h>
#include <sys/types.h>

struct np_pipe {
    int rfd, wfd;
};

/* Sets the size asked of new pipes (F_SETPIPE_SZ) and how many idle pipes are kept. */
void np_pipepool_configure(size_t pipe_size, int max_idle);
size_t np_pipepool_pipe_size(void);

/* 0 and a pipe, or -1 with errno set (e.g. EMFILE). */
int np_pipe_get(struct np_pipe *p);

/* Returns an empty pipe to the pool (or closes it when the pool is full). */
void np_pipe_put(struct np_pipe *p);

/* Closes a pipe that may hold bytes. */
void np_pipe_discard(struct np_pipe *p);

/* One splice(2) without blocking, retried on EINTR, from a socket into the pipe or out of the
 * pipe into a socket (SPLICE_F_MOVE): bytes moved, 0 at the source's EOF, -1 with errno. */
ssize_t np_pipe_fill(struct np_pipe *p, int from_fd, size_t len);
ssize_t np_pipe_drain(struct np_pipe *p, int to_fd, size_t len);

void np_pipepool_free(void);

#endif
