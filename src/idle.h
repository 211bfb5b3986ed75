/* Idle timeouts for many objects at once: all the members with the same timeout length
 * share one list, in the order they were last active, and one timer (for its head). Being
 * active is O(1) (a move to the tail); a member holds no timer of its own. */
#ifndef NP_IDLE_H
#define NP_IDLE_H

struct np_idle_list;

/* A member, embedded in its owner. */
struct np_idle {
    struct np_idle *prev, *next;
    struct np_idle_list *list;      /* NULL while not a member */
    double last;                    /* when it was last active */
    void (*expired)(struct np_idle *m);     /* called once, after it has left its list */
};

/* Joins the list of `timeout` seconds (> 0), active now. 0, or -1 when out of memory. */
int np_idle_join(struct np_idle *m, double timeout, void (*expired)(struct np_idle *m));

/* Active again now. */
void np_idle_touch(struct np_idle *m);

/* Leaves its list (idempotent). */
void np_idle_leave(struct np_idle *m);

#endif
