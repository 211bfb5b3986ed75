/* dual's timing rules, in one loop for both of its paths (the core's sniffing proxy,
 * sniff.c, and a session's core.sniff): read the client's first bytes as they come into a
 * buffer that keeps them (its owner takes it at the end: they go to the server first, or
 * back to the socket's read-ahead), ask pick after each arrival, and end at the first
 * answer, at max_peek bytes, probe_timeout after the first byte, or a silence of `silence`
 * seconds before any. */
#ifndef NP_SNIFFER_H
#define NP_SNIFFER_H
#include <stddef.h>
#include <event2/event_struct.h>

struct np_sniff_rules {
    double silence;             /* seconds without a byte before the client counts as silent */
    double probe_timeout;       /* seconds from the first byte for pick to decide */
    size_t max_peek;            /* bytes read at most: past them nothing matched */
};

/* pick's answers besides a choice (a number > 0, the owner's to interpret) */
enum { NP_SNIFF_MORE = 0, NP_SNIFF_NONE = -1, NP_SNIFF_FAILED = -2 };

/* How a sniff ended. */
enum np_sniff_end {
    NP_SNIFF_PICKED,            /* pick chose: value is its answer */
    NP_SNIFF_NO_MATCH,          /* pick said none can match, or max_peek, or probe_timeout */
    NP_SNIFF_SILENT,            /* no byte within silence */
    NP_SNIFF_CLOSED,            /* the client closed (value 0) or failed (value: errno) */
    NP_SNIFF_PICK_FAILED,       /* pick could not answer (a Lua error, which it kept) */
};

struct np_sniffer_ops {
    /* The bytes read so far (len > 0): a choice (> 0), NP_SNIFF_MORE, NP_SNIFF_NONE or
     * NP_SNIFF_FAILED. It only answers: acting on the answer is ended's. */
    int (*pick)(void *arg, const char *bytes, size_t len);
    /* The end, once the sniffer has stopped (it is not touched after this call). heard: a
     * byte had come; bytes: how many are held. */
    void (*ended)(void *arg, enum np_sniff_end how, int value, int heard, size_t bytes);
};

struct np_sniffer {
    int fd;
    char *bytes;                /* what was read (malloc'd; np_sniffer_take hands it over) */
    size_t len;
    struct event ev;            /* the fd readable, or the deadline */
    double started, heard;      /* heard: when the first byte came; 0 before */
    struct np_sniff_rules rules;
    const struct np_sniffer_ops *ops;
    void *arg;
    int active;
};

/* Starts sniffing fd (non-blocking), after the len bytes given (read ahead before: they
 * count as heard; copied); started: when the silence counts from. The first answer may come
 * inside this call. */
void np_sniffer_start(struct np_sniffer *sn, int fd, const char *ahead, size_t len, double started,
                      const struct np_sniff_rules *rules, const struct np_sniffer_ops *ops, void *arg);

/* Stops it (nothing more is told); idempotent. The bytes stay until taken or freed. */
void np_sniffer_stop(struct np_sniffer *sn);

/* The bytes read (NULL when none), which the caller frees; *len their count. */
char *np_sniffer_take(struct np_sniffer *sn, size_t *len);

/* Stops it and frees the bytes it holds. */
void np_sniffer_free(struct np_sniffer *sn);

#endif
