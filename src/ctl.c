/* `netproxy ctl [-S SOCKET] COMMAND... [--json]`: the client of the control socket
 * (control.c). The words are joined into the one line the socket takes, the answer is
 * printed; the exit status is 0 for an answer, 1 for an error answer, 2 when the socket
 * cannot be reached or the usage is wrong. */
#include "ctl.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/netproxy/control.sock"
#define ANSWER_WAIT_MS 30000

static const char usage[] =
    "usage: netproxy ctl [-S SOCKET] COMMAND... [--json]\n"
    "Sends one command to a running netproxy's control socket (server{ control = PATH };\n"
    "default " DEFAULT_SOCKET ", or $NETPROXY_CONTROL) and prints the answer.\n"
    "Commands: show info | show proxies | show conns [PROXY] | kill conn [PID:]ID\n"
    "  | show servers [PROXY] | set server PROXY HOST:PORT state ready|drain|maint\n"
    "  | set server PROXY HOST:PORT weight N | add server PROXY HOST:PORT [weight N] [backup]\n"
    "  | del server PROXY HOST:PORT | dict keys|get|set|del NAME ... | reload | help\n";

static int connect_to(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd;

    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "netproxy ctl: %s: path too long\n", path);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        fprintf(stderr, "netproxy ctl: %s: %s\n", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

/* The words after the options, joined by spaces, with a line end. */
static char *command_line(int argc, char **argv, int first)
{
    size_t len = 2;
    char *line;

    for (int i = first; i < argc; i++) len += strlen(argv[i]) + 1;
    if (!(line = calloc(1, len))) return NULL;
    for (int i = first; i < argc; i++) {
        if (i > first) strcat(line, " ");
        strcat(line, argv[i]);
    }
    strcat(line, "\n");
    return line;
}

/* Prints what the socket answers until it closes: 0 for an answer, 1 for an error. */
static int relay_answer(int fd)
{
    char buf[8192];
    int first = 1, failed = 0;

    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int ready = poll(&p, 1, ANSWER_WAIT_MS);
        if (ready <= 0) {
            fprintf(stderr, "netproxy ctl: no answer within %ds\n", ANSWER_WAIT_MS / 1000);
            return 2;
        }
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (first) failed = !strncmp(buf, "error:", n < 6 ? (size_t)n : 6) || !strncmp(buf, "{\"error\"", 8) ||
                            !strncmp(buf, "{\"ok\":false", (size_t)(n < 11 ? n : 11));
        first = 0;
        fwrite(buf, 1, (size_t)n, stdout);
    }
    fflush(stdout);
    return first ? 2 : failed;
}

int np_ctl_main(int argc, char **argv)
{
    const char *path = getenv("NETPROXY_CONTROL");
    int first = 1, fd, rc;
    char *line;

    if (!path || !*path) path = DEFAULT_SOCKET;
    while (first < argc && argv[first][0] == '-' && strcmp(argv[first], "--json")) {
        if (!strcmp(argv[first], "-S") && first + 1 < argc) {
            path = argv[first + 1];
            first += 2;
        } else if (!strncmp(argv[first], "--socket=", 9)) {
            path = argv[first++] + 9;
        } else if (!strcmp(argv[first], "-h") || !strcmp(argv[first], "--help")) {
            fputs(usage, stdout);
            return 0;
        } else {
            fprintf(stderr, "netproxy ctl: unknown option %s\n%s", argv[first], usage);
            return 2;
        }
    }
    if (first >= argc) {
        fputs(usage, stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);   /* a refused peer is answered and closed before it writes */
    if ((fd = connect_to(path)) < 0) return 2;
    line = command_line(argc, argv, first);
    if (!line || (write(fd, line, strlen(line)) != (ssize_t)strlen(line) && errno != EPIPE)) {
        fprintf(stderr, "netproxy ctl: %s: cannot send: %s\n", path, strerror(errno));
        free(line);
        close(fd);
        return 2;
    }
    free(line);
    rc = relay_answer(fd);
    close(fd);
    return rc;
}
