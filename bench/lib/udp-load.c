/* bench/lib/udp-load.c: the UDP load of bench/udp.sh (built by it with cc -O2).
 *   udp-load echo PORT [PROCS]               an echo server on 127.0.0.1:PORT (PROCS processes
 *                                            on a SO_REUSEPORT group; default 1)
 *   udp-load rate PORT SIZE SECONDS WINDOW [FIRST]
 *                                            one socket keeps WINDOW datagrams of SIZE bytes in
 *                                            flight for SECONDS; prints "pps=N lost=N". FIRST: a
 *                                            file sent first, as one datagram, and its echo
 *                                            awaited (a QUIC Initial for bench/quic.sh)
 *   udp-load mrate PORT SIZE SECONDS WINDOW FLOWS PROCS
 *                                            PROCS processes, FLOWS sockets (flows) in all, each
 *                                            keeping WINDOW datagrams in flight; prints the sum,
 *                                            "pps=N lost=N"
 *   udp-load latency PORT SIZE COUNT         ping-pong; prints "p50_us=N p99_us=N avg_us=N"
 *   udp-load flows PORT N                    N sockets (N flows) each ask once and stay open;
 *                                            prints "ready ok=N", then waits to be killed
 *   udp-load newflows PORT N FILE            N flows one after the other: a new socket sends
 *                                            FILE as one datagram, awaits its echo, closes;
 *                                            prints "flows_per_s=N ok=N" */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct sockaddr_in addr(int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    return sa;
}

static int client(int port)
{
    struct sockaddr_in sa = addr(port);
    int fd = socket(AF_INET, SOCK_DGRAM, 0), size = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("connect"); exit(1); }
    return fd;
}

static int wait_in(int fd, int ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    return poll(&p, 1, ms) > 0;
}

/* FILE's bytes into buf (at most max): their count, or -1. */
static long slurp(const char *path, char *buf, size_t max)
{
    FILE *f = fopen(path, "rb");
    long n;

    if (!f) return -1;
    n = (long)fread(buf, 1, max, f);
    fclose(f);
    return n;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* FLOWS sockets in one process, each with WINDOW in flight; a socket with no reply for
 * 100 ms has lost its window, which is sent again. */
static void mrate(int port, int size, double seconds, int window, int flows, long *got, long *lost)
{
    static char buf[65536];
    struct pollfd *p = calloc(flows, sizeof *p);
    double *last = calloc(flows, sizeof *last), end, t;

    memset(buf, 'x', size);
    for (int i = 0; i < flows; i++) {
        p[i] = (struct pollfd){ .fd = client(port), .events = POLLIN };
        for (int w = 0; w < window; w++) send(p[i].fd, buf, size, 0);
        last[i] = now();
    }
    end = now() + seconds;
    while ((t = now()) < end) {
        if (poll(p, flows, 10) < 0) continue;
        for (int i = 0; i < flows; i++) {
            if (p[i].revents & POLLIN) {
                while (recv(p[i].fd, buf, sizeof buf, MSG_DONTWAIT) >= 0) {
                    (*got)++;
                    send(p[i].fd, buf, size, 0);
                }
                last[i] = t;
            } else if (t - last[i] > 0.1) {
                *lost += window;
                for (int w = 0; w < window; w++) send(p[i].fd, buf, size, 0);
                last[i] = t;
            }
        }
    }
}

int main(int argc, char **argv)
{
    static char buf[65536];
    if (argc < 3) return 2;
    int port = atoi(argv[2]);
    if (!strcmp(argv[1], "echo")) {
        struct sockaddr_in sa = addr(port), peer;
        int procs = argc > 3 ? atoi(argv[3]) : 1, one = 1;
        pid_t parent = getpid();
        for (int i = 1; i < procs && fork() > 0; i++) {}   /* the children go on as servers too */
        if (getpid() != parent) {                           /* and end with the parent */
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent) return 0;
        }
        int fd = socket(AF_INET, SOCK_DGRAM, 0), size = 4 << 20;
        if (procs > 1) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("bind"); return 1; }
        for (;;) {
            socklen_t len = sizeof peer;
            ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &len);
            if (n >= 0) sendto(fd, buf, n, 0, (struct sockaddr *)&peer, len);
        }
    }
    if (!strcmp(argv[1], "rate") && (argc == 6 || argc == 7)) {
        int size = atoi(argv[3]), window = atoi(argv[5]), fd = client(port);
        double seconds = atof(argv[4]), end;
        long got = 0, sent = 0, inflight = 0, lost = 0, n;
        if (argc == 7) {
            if ((n = slurp(argv[6], buf, sizeof buf)) < 0) { perror(argv[6]); return 1; }
            send(fd, buf, n, 0);
            if (!wait_in(fd, 2000) || recv(fd, buf, sizeof buf, 0) != n) { printf("failed\n"); return 1; }
        }
        memset(buf, 'x', size);
        for (int i = 0; i < window; i++, sent++, inflight++) send(fd, buf, size, 0);
        end = now() + seconds;
        while (now() < end) {
            if (!wait_in(fd, 100)) {            /* lost ones: refill the window */
                lost += inflight;
                for (inflight = 0; inflight < window; inflight++, sent++) send(fd, buf, size, 0);
                continue;
            }
            if (recv(fd, buf, sizeof buf, MSG_DONTWAIT) < 0) continue;
            got++;
            send(fd, buf, size, 0);
            sent++;
        }
        printf("pps=%.0f lost=%ld\n", got / seconds, lost);
        return 0;
    }
    if (!strcmp(argv[1], "mrate") && argc == 8) {
        int size = atoi(argv[3]), window = atoi(argv[5]), flows = atoi(argv[6]), procs = atoi(argv[7]);
        double seconds = atof(argv[4]);
        int out[2];
        long got = 0, lost = 0, g, l;
        if (procs < 1 || flows < procs || pipe(out) < 0) return 2;
        for (int i = 0; i < procs; i++) {
            if (fork() == 0) {
                long mine = 0, mine_lost = 0;
                mrate(port, size, seconds, window, flows / procs + (i < flows % procs), &mine, &mine_lost);
                dprintf(out[1], "%ld %ld\n", mine, mine_lost);
                _exit(0);
            }
        }
        close(out[1]);
        FILE *in = fdopen(out[0], "r");
        while (fscanf(in, "%ld %ld", &g, &l) == 2) {
            got += g;
            lost += l;
        }
        while (wait(NULL) > 0) {}
        printf("pps=%.0f lost=%ld\n", got / seconds, lost);
        return 0;
    }
    if (!strcmp(argv[1], "latency") && argc == 5) {
        int size = atoi(argv[3]), count = atoi(argv[4]), fd = client(port), n = 0;
        double *t = calloc(count, sizeof *t), sum = 0;
        memset(buf, 'x', size);
        for (int i = 0; i < count; i++) {
            double t0 = now();
            send(fd, buf, size, 0);
            if (!wait_in(fd, 1000) || recv(fd, buf, sizeof buf, 0) != size) continue;
            t[n] = (now() - t0) * 1e6;
            sum += t[n++];
        }
        if (n == 0) { printf("failed\n"); return 1; }
        qsort(t, n, sizeof *t, cmp);
        printf("p50_us=%.1f p99_us=%.1f avg_us=%.1f lost=%d\n", t[n / 2], t[n * 99 / 100], sum / n, count - n);
        return 0;
    }
    if (!strcmp(argv[1], "newflows") && argc == 5) {
        static char first[65536];
        int count = atoi(argv[3]), ok = 0;
        long n = slurp(argv[4], first, sizeof first);
        double t0 = now();
        if (n < 0) { perror(argv[4]); return 1; }
        for (int i = 0; i < count; i++) {
            int fd = client(port);
            send(fd, first, n, 0);
            if (wait_in(fd, 2000) && recv(fd, buf, sizeof buf, 0) == n) ok++;
            close(fd);
        }
        printf("flows_per_s=%.0f ok=%d\n", count / (now() - t0), ok);
        return 0;
    }
    if (!strcmp(argv[1], "flows") && argc == 4) {
        int count = atoi(argv[3]), ok = 0;
        for (int i = 0; i < count; i++) {
            int fd = client(port);
            send(fd, "hello", 5, 0);
            if (wait_in(fd, 2000) && recv(fd, buf, sizeof buf, 0) == 5) ok++;
        }
        printf("ready ok=%d\n", ok);
        fflush(stdout);
        pause();
    }
    return 2;
}
