/* bench/lib/udp-load.c: the UDP load of bench/udp.sh (built by it with cc -O2).
 *   udp-load echo PORT                       an echo server on 127.0.0.1:PORT
 *   udp-load rate PORT SIZE SECONDS WINDOW   one socket keeps WINDOW datagrams of SIZE bytes in
 *                                            flight for SECONDS; prints "pps=N lost=N"
 *   udp-load latency PORT SIZE COUNT         ping-pong; prints "p50_us=N p99_us=N avg_us=N"
 *   udp-load flows PORT N                    N sockets (N flows) each ask once and stay open;
 *                                            prints "ready ok=N", then waits to be killed */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    static char buf[65536];
    if (argc < 3) return 2;
    int port = atoi(argv[2]);
    if (!strcmp(argv[1], "echo")) {
        struct sockaddr_in sa = addr(port), peer;
        int fd = socket(AF_INET, SOCK_DGRAM, 0), size = 4 << 20;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("bind"); return 1; }
        for (;;) {
            socklen_t len = sizeof peer;
            ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &len);
            if (n >= 0) sendto(fd, buf, n, 0, (struct sockaddr *)&peer, len);
        }
    }
    if (!strcmp(argv[1], "rate") && argc == 6) {
        int size = atoi(argv[3]), window = atoi(argv[5]), fd = client(port);
        double seconds = atof(argv[4]), end;
        long got = 0, sent = 0, inflight = 0, lost = 0;
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
