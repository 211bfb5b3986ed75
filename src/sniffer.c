/* dual's timing rules in one loop (see sniffer.h). */
#include "sniffer.h"
#include "loop.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>

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
    sn->ops->ended(sn->arg, how, value, sn->heard > 0, evbuffer_get_length(sn->bytes));
}

/* Asks pick about what is held; waits for more while it wants more and may have it. */
static void ask(struct np_sniffer *sn)
{
    size_t len = evbuffer_get_length(sn->bytes);
    int answer = sn->ops->pick(sn->arg, (const char *)evbuffer_pullup(sn->bytes, -1), len);

    if (answer > 0) end(sn, NP_SNIFF_PICKED, answer);
    else if (answer == NP_SNIFF_FAILED) end(sn, NP_SNIFF_PICK_FAILED, 0);
    else if (answer == NP_SNIFF_NONE || len >= sn->rules.max_peek) end(sn, NP_SNIFF_NO_MATCH, 0);
    else wait_until(sn, sn->heard + sn->rules.probe_timeout);
}

/* The fd is readable (or may be): read what has come, then ask or wait. */
static void heard(struct np_sniffer *sn)
{
    size_t room = sn->rules.max_peek - evbuffer_get_length(sn->bytes);
    int got = evbuffer_read(sn->bytes, sn->fd, room < READ_AT_ONCE ? (int)room : READ_AT_ONCE);

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

void np_sniffer_start(struct np_sniffer *sn, int fd, struct evbuffer *bytes, double started,
                      const struct np_sniff_rules *rules, const struct np_sniffer_ops *ops, void *arg)
{
    sn->fd = fd;
    sn->bytes = bytes;
    sn->started = started;
    sn->heard = 0;
    sn->rules = *rules;
    sn->ops = ops;
    sn->arg = arg;
    sn->active = 1;
    event_assign(&sn->ev, np_base, fd, EV_READ, on_event, sn);
    if (evbuffer_get_length(bytes) == 0) {
        heard(sn);                      /* its bytes are often there already */
        return;
    }
    sn->heard = np_now();               /* read ahead before (a PROXY protocol header's rest) */
    if (evbuffer_get_length(bytes) >= rules->max_peek) ask(sn);
    else heard(sn);
}

void np_sniffer_stop(struct np_sniffer *sn)
{
    if (!sn->active) return;
    sn->active = 0;
    event_del(&sn->ev);
}
