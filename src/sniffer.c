/* dual's timing rules in one loop (see sniffer.h). */
#include "sniffer.h"
#include "loop.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_AT_ONCE 65536          /* one read's most, as a cosocket's peek reads */

static void wait_until(struct np_sniffer *sn, double deadline)
{
    double left = deadline - np_now();
    struct timeval tv = np_tv(left > 0 ? left : 0);

    event_add(&sn->ev, &tv);
}

static void end(struct np_sniffer *sn, enum np_sniff_end how, int value)
{
    np_sniffer_stop(sn);
    sn->ops->ended(sn->arg, how, value, sn->heard > 0, sn->len);
}

/* Asks pick about what is held; waits for more while it wants more and may have it. */
static void ask(struct np_sniffer *sn)
{
    int answer = sn->ops->pick(sn->arg, sn->bytes, sn->len);

    if (answer > 0) end(sn, NP_SNIFF_PICKED, answer);
    else if (answer == NP_SNIFF_FAILED) end(sn, NP_SNIFF_PICK_FAILED, 0);
    else if (answer == NP_SNIFF_NONE || sn->len >= sn->rules.max_peek) end(sn, NP_SNIFF_NO_MATCH, 0);
    else wait_until(sn, sn->heard + sn->rules.probe_timeout);
}

/* Appends n bytes: 0, or -1 (ENOMEM). */
static int keep(struct np_sniffer *sn, const char *data, size_t n)
{
    char *grown = realloc(sn->bytes, sn->len + n);

    if (!grown) {
        errno = ENOMEM;
        return -1;
    }
    memcpy(grown + sn->len, data, n);
    sn->bytes = grown;
    sn->len += n;
    return 0;
}

/* One read of what has come, at most what max_peek leaves room for: the count, 0 at EOF,
 * -1 with errno (EAGAIN: nothing yet). */
static ssize_t take_in(struct np_sniffer *sn)
{
    static char scratch[READ_AT_ONCE];
    size_t room = sn->rules.max_peek - sn->len;
    ssize_t got = read(sn->fd, scratch, room < sizeof scratch ? room : sizeof scratch);

    if (got > 0 && keep(sn, scratch, (size_t)got) < 0) return -1;
    return got;
}

/* The fd is readable (or may be): read what has come, then ask or wait. */
static void heard(struct np_sniffer *sn)
{
    ssize_t got = take_in(sn);

    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        wait_until(sn, sn->heard ? sn->heard + sn->rules.probe_timeout : sn->started + sn->rules.silence);
    } else if (got <= 0) {
        end(sn, NP_SNIFF_CLOSED, got == 0 ? 0 : errno);
    } else {
        if (!sn->heard) sn->heard = np_now();
        ask(sn);
    }
}

static void on_event(evutil_socket_t fd, short what, void *arg)
{
    struct np_sniffer *sn = arg;

    if (!(what & EV_TIMEOUT)) heard(sn);
    else end(sn, sn->heard ? NP_SNIFF_NO_MATCH : NP_SNIFF_SILENT, 0);
}

void np_sniffer_start(struct np_sniffer *sn, int fd, const char *ahead, size_t len, double started,
                      const struct np_sniff_rules *rules, const struct np_sniffer_ops *ops, void *arg)
{
    sn->fd = fd;
    sn->bytes = NULL;
    sn->len = 0;
    sn->started = started;
    sn->heard = 0;
    sn->rules = *rules;
    sn->ops = ops;
    sn->arg = arg;
    sn->active = 1;
    event_assign(&sn->ev, np_base, fd, EV_READ, on_event, sn);
    if (len == 0) {
        heard(sn);                      /* its bytes are often there already */
        return;
    }
    if (keep(sn, ahead, len) < 0) {     /* read ahead before (a PROXY protocol header's rest) */
        end(sn, NP_SNIFF_CLOSED, ENOMEM);
        return;
    }
    sn->heard = np_now();
    if (sn->len >= rules->max_peek) ask(sn);
    else heard(sn);
}

void np_sniffer_stop(struct np_sniffer *sn)
{
    if (!sn->active) return;
    sn->active = 0;
    event_del(&sn->ev);
}

char *np_sniffer_take(struct np_sniffer *sn, size_t *len)
{
    char *bytes = sn->bytes;

    *len = sn->len;
    sn->bytes = NULL;
    sn->len = 0;
    return bytes;
}

void np_sniffer_free(struct np_sniffer *sn)
{
    np_sniffer_stop(sn);
    free(sn->bytes);
    sn->bytes = NULL;
    sn->len = 0;
}
