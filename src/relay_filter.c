/* A relay's filters: each chunk read in a filtered direction through ops->filter (a hook),
 * kept or replaced, and the bytes injected meanwhile (np_relay_inject) moved into place. */
#include "relay_impl.h"
#include "buf.h"

/* Moves injected bytes into their directions' buffers. -1 when out of memory. */
int np_relay_settle_injections(struct np_relay *r)
{
    for (int i = 0; i < 2; i++) {
        struct direction *d = &r->dir[i];
        if (np_buf_len(&d->injected) == 0) continue;
        if (np_buf_append(&d->buf, d->injected.data + d->injected.start,
                          np_buf_len(&d->injected)) < 0)
            r->injection_failed = 1;
        np_buf_release(&d->injected);
    }
    if (r->injection_failed) return np_relay_stop(r, NP_END_NO_MEMORY, "injected bytes");
    return 0;
}

/* Passes the n bytes just read (the end of d->buf) through the direction's filter; at EOF
 * (n == 0) it is called once more with eof set. Returns -1 once the relay has stopped. */
int np_relay_run_filter(struct np_relay *r, struct direction *d, size_t n)
{
    const char *chunk = d->buf.data ? d->buf.data + d->buf.end - n : "", *out;
    size_t outlen;
    enum np_filter_rc rc = r->ops->filter(r->arg, d->from, chunk, n, n == 0, &out, &outlen);

    if (rc == NP_FILTER_STOP) return np_relay_stop(r, NP_END_CLOSED, "by a filter");
    if (rc == NP_FILTER_REPLACE) {
        int appended;
        d->buf.end -= n;
        appended = np_buf_append(&d->buf, out, outlen);
        if (np_buf_len(&d->buf) == 0) np_buf_release(&d->buf);
        r->ops->filter_done(r->arg);
        if (appended < 0) return np_relay_stop(r, NP_END_NO_MEMORY, "filtered bytes");
    }
    return np_relay_settle_injections(r);
}
