/* A cosocket's sniff (core.sniff: dual's session path): the client's first bytes read by
 * dual's timing rules (sniffer.c), the pick function asked after each arrival, and put back
 * in the socket's read-ahead at the end, for whoever reads next; the coroutine waits. */
#include "sock_impl.h"
#include "errtoken.h"

#include <event2/buffer.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>

void np_sock_stop_sniffing(struct np_sock *s)
{
    struct np_sock_sniff *k = s->sniffing;

    if (!k) return;
    np_sniffer_free(&k->sn);
    luaL_unref(s->owner->L, LUA_REGISTRYINDEX, k->pick_ref);
    free(k);
    s->sniffing = NULL;
}

/* pick(bytes) in the main state under the task's limits: a number > 0 chose, nil wants
 * more, anything else: none can match. */
static int pick(void *arg, const char *bytes, size_t len)
{
    struct np_sock_sniff *k = arg;
    lua_State *L = k->running ? k->running : k->s->owner->L;    /* a suspended one takes no call */
    int answer;

    lua_rawgeti(L, LUA_REGISTRYINDEX, k->pick_ref);
    lua_pushlstring(L, bytes, len);
    if (np_call(L, 1, 1, &k->limits, k->err, sizeof k->err) < 0) return NP_SNIFF_FAILED;
    if (lua_isnil(L, -1)) answer = NP_SNIFF_MORE;
    else if (lua_type(L, -1) == LUA_TNUMBER && lua_tointeger(L, -1) > 0) answer = (int)lua_tointeger(L, -1);
    else answer = NP_SNIFF_NONE;
    lua_pop(L, 1);
    return answer;
}

/* Hands the coroutine how, value, bytes held (back in the read-ahead): resumed, or returned
 * at once when the end came while it started the sniff. */
static void ended(void *arg, enum np_sniff_end how, int value, int heard, size_t bytes)
{
    static const char *const words[] = { "picked", "none", "silent", "closed", "error" };
    struct np_sock_sniff *k = arg;
    struct np_sock *s = k->s;
    lua_State *co = s->owner->co;
    int at_once = k->running != NULL;
    char closed[64], *read;
    size_t len;

    lua_pushstring(co, words[how]);
    switch (how) {
    case NP_SNIFF_PICKED: lua_pushinteger(co, value); break;
    case NP_SNIFF_CLOSED:
        snprintf(closed, sizeof closed, "%s%s", value ? np_err_token(value) : "closed", heard ? " while probed" : "");
        lua_pushstring(co, closed);
        break;
    case NP_SNIFF_PICK_FAILED: lua_pushstring(co, k->err); break;
    default: lua_pushnil(co);
    }
    lua_pushinteger(co, (lua_Integer)bytes);
    /* the sniffer copied the read-ahead at its start, then read on: all of it goes back */
    read = np_sniffer_take(&k->sn, &len);
    evbuffer_drain(s->inbuf, evbuffer_get_length(s->inbuf));
    if (len && evbuffer_add(s->inbuf, read, len) < 0) {
        lua_settop(co, lua_gettop(co) - 3);
        lua_pushliteral(co, "closed");
        lua_pushliteral(co, "out of memory");
        lua_pushinteger(co, 0);
    }
    free(read);
    if (at_once) {
        k->ended_at_once = 1;           /* np_sock_sniff returns them, and lets k go */
        return;
    }
    np_sock_stop_sniffing(s);
    np_sock_resume(s, 3);
}

static const struct np_sniffer_ops ops = { .pick = pick, .ended = ended };

int np_sock_sniff(lua_State *L, struct np_sock *s, const struct np_sniff_rules *rules, double started,
                  const struct np_limits *limits)
{
    struct np_sock_sniff *k;

    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (s->ssl || s->dgram) return luaL_error(L, "sniff: only a plain stream socket");
    if (s->fd < 0 || s->sniffing || !s->owner || s->owner->co != L) return np_sock_push_fail(L, "closed");
    if ((!s->inbuf && !(s->inbuf = evbuffer_new())) || !(k = calloc(1, sizeof *k)))
        return np_sock_push_fail(L, "out of memory");
    k->s = s;
    k->limits = *limits;
    lua_pushvalue(L, 2);
    k->pick_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    s->sniffing = k;
    k->running = L;
    size_t held = evbuffer_get_length(s->inbuf);    /* a PROXY header's rest, say: heard already */
    const char *ahead = held ? (const char *)evbuffer_pullup(s->inbuf, -1) : NULL;
    np_sniffer_start(&k->sn, s->fd, ahead, held, started, rules, &ops, k);
    k->running = NULL;
    if (k->ended_at_once) {             /* the bytes were there: decided in this call */
        np_sock_stop_sniffing(s);
        return 3;
    }
    return np_sock_yield(L, s, 1);
}
