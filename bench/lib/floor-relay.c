/* bench/lib/floor-relay.c: the floor under any TCP proxy's cost per connection (built by
 * bench/run.sh with cc -O2). Not a proxy anyone should run: no timeouts, no logs, no limits,
 * no error handling beyond closing. It makes the fewest system calls a relay of one
 * connection can make (accept4, socket, connect, setsockopt TCP_NODELAY, one edge-triggered
 * epoll registration per socket, a read and a write per chunk, one read per EOF, one
 * shutdown, two close) and does nothing else, so what it costs per connection is what the
 * kernel charges any proxy for the same exchange.
 *   floor-relay LISTEN-PORT SERVER-PORT     (both on 127.0.0.1; runs until killed) */
#define _GNU_SOURCE                 /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 16384

struct side {
    int fd;
    int eof;                    /* read EOF: the other side was shut down */
    struct side *peer;
    struct pair *pair;
};

struct pair {
    struct side s[2];
    int open;                   /* sides not yet at EOF */
};

static int ep;
static char buf[BUF];
static struct side listener, gone;     /* epoll marks: the listener, a freed pair's side */

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sa;
}

static void watch(struct side *s)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = s };
    epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
}

static void finish(struct pair *p)
{
    close(p->s[0].fd);          /* close removes them from the epoll set */
    close(p->s[1].fd);
    free(p);
}

/* Moves what s can read to its peer. Edge-triggered, but a read shorter than the buffer
 * is taken to have drained the socket: no read only to see EAGAIN. Small writes to a
 * loopback socket never block, and the floor is measured with short exchanges only.
 * Returns 1 when the pair ended (it is freed). */
static int pump(struct side *s)
{
    for (;;) {
        ssize_t n = read(s->fd, buf, BUF);
        if (n > 0) {
            if (write(s->peer->fd, buf, (size_t)n) != n) break;
            if (n == BUF) continue;
            return 0;
        }
        if (n < 0 && errno == EAGAIN) return 0;
        if (n < 0) break;
        s->eof = 1;
        if (--s->pair->open == 0) break;        /* both ends done: close() sends the FIN */
        shutdown(s->peer->fd, SHUT_WR);
        return 0;
    }
    finish(s->pair);
    return 1;
}

static void accept_all(int lfd, struct sockaddr_in *server)
{
    for (;;) {
        int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK), sfd, one = 1;
        if (cfd < 0) return;
        sfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (connect(sfd, (struct sockaddr *)server, sizeof *server) < 0 && errno != EINPROGRESS) {
            close(cfd);
            close(sfd);
            continue;
        }
        setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct pair *p = calloc(1, sizeof *p);
        p->open = 2;
        p->s[0] = (struct side){ .fd = cfd, .peer = &p->s[1], .pair = p };
        p->s[1] = (struct side){ .fd = sfd, .peer = &p->s[0], .pair = p };
        watch(&p->s[0]);
        watch(&p->s[1]);
    }
}

int main(int argc, char **argv)
{
    struct sockaddr_in listen_at, server;
    struct epoll_event evs[64];
    int lfd, one = 1;

    if (argc != 3) {
        fprintf(stderr, "usage: floor-relay LISTEN-PORT SERVER-PORT\n");
        return 2;
    }
    listen_at = loopback(atoi(argv[1]));
    server = loopback(atoi(argv[2]));
    ep = epoll_create1(0);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);   /* accepted sockets inherit it */
    if (bind(lfd, (struct sockaddr *)&listen_at, sizeof listen_at) < 0 || listen(lfd, 4096) < 0) {
        perror("floor-relay: listen");
        return 1;
    }
    struct epoll_event lev = { .events = EPOLLIN, .data.ptr = &listener };
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            struct side *s = evs[i].data.ptr, *peer;
            if (s == &listener) {
                accept_all(lfd, &server);
                continue;
            }
            if (s == &gone || s->eof || !(evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
                continue;       /* writable only: the connect completing, or room to write */
            peer = s->peer;
            if (pump(s)) {      /* the pair is freed: later events of this batch for it are stale */
                for (int j = i + 1; j < n; j++)
                    if (evs[j].data.ptr == peer) evs[j].data.ptr = &gone;
            }
        }
    }
}
