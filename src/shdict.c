/* Shared dicts: one anonymous shared mapping per dict, made before fork. Inside: a header
 * (the lock, the LRU list, the free list), hash buckets, and fixed-size entries (a key and
 * its value together in ENTRY_DATA bytes). The lock is a pthread mutex set
 * PTHREAD_PROCESS_SHARED and ROBUST: a worker killed while holding it (the watchdog's
 * SIGKILL) leaves it to the next locker (EOWNERDEAD) instead of blocking every worker, and a
 * sleeping mutex costs nothing on a machine with fewer cores than workers, where a spin
 * lock would spin against the holder it waits for. */
#include "shdict.h"
#include "log.h"

#include <errno.h>
#include <lauxlib.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define DICT_MT "netproxy.shared"
#define ENTRY_DATA 448          /* key + value bytes an entry holds */
#define MAX_DICTS 64

enum { T_NONE, T_STRING, T_NUMBER, T_BOOLEAN };

struct entry {
    uint32_t hnext;             /* next in its bucket, as index + 1; 0 = none */
    uint32_t prev, next;        /* LRU list (most recent first) or free list, as index + 1 */
    uint32_t hash;
    uint8_t used, type;
    uint16_t klen;
    uint32_t vlen;
    double expires;             /* CLOCK_MONOTONIC seconds (the same in every process); 0 = never */
    double num;                 /* T_NUMBER, T_BOOLEAN */
    char data[ENTRY_DATA];      /* the key, then a string value */
};

struct header {
    pthread_mutex_t lock;
    uint32_t nentries, nbuckets;
    uint32_t lru_head, lru_tail, free_head;    /* index + 1 */
};

struct dict {
    char name[64];
    size_t size;
    struct header *h;
    uint32_t *buckets;
    struct entry *e;
};

static struct dict dicts[MAX_DICTS];
static int ndicts;

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint32_t hash_of(const char *k, size_t n)
{
    uint32_t h = 2166136261u;   /* FNV-1a */

    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)k[i]) * 16777619u;
    return h;
}

int np_shdict_define(const char *name, size_t size, char *err, size_t errlen)
{
    struct dict *d;
    pthread_mutexattr_t attr;
    size_t per = sizeof(struct entry) + 2 * sizeof(uint32_t), n;

    for (int i = 0; i < ndicts; i++) {
        if (strcmp(dicts[i].name, name)) continue;
        if (dicts[i].size != size)
            np_log(NP_NOTICE, "shared dict %s: keeps its size %zu bytes (a reload does not resize)",
                   name, dicts[i].size);
        return 0;
    }
    if (ndicts == MAX_DICTS || strlen(name) >= sizeof d->name) {
        snprintf(err, errlen, "shared dict %s: too many dicts or too long a name", name);
        return -1;
    }
    n = (size - sizeof(struct header)) / per;
    if (size < sizeof(struct header) + per * 8) {
        snprintf(err, errlen, "shared dict %s: %zu bytes is too small", name, size);
        return -1;
    }
    d = &dicts[ndicts];
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
        snprintf(err, errlen, "shared dict %s: mmap %zu bytes: %s", name, size, strerror(errno));
        return -1;
    }
    snprintf(d->name, sizeof d->name, "%s", name);
    d->size = size;
    d->h = base;
    d->h->nentries = (uint32_t)n;
    d->h->nbuckets = (uint32_t)n;
    d->buckets = (uint32_t *)(d->h + 1);
    d->e = (struct entry *)(((uintptr_t)(d->buckets + n) + 15) & ~(uintptr_t)15);
    while ((char *)(d->e + d->h->nentries) > (char *)base + size) d->h->nentries--;
    for (uint32_t i = 0; i < d->h->nentries; i++) d->e[i].next = i + 2 <= d->h->nentries ? i + 2 : 0;
    d->h->free_head = 1;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&d->h->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    ndicts++;
    return 0;
}

static void lock(struct dict *d)
{
    if (pthread_mutex_lock(&d->h->lock) == EOWNERDEAD) pthread_mutex_consistent(&d->h->lock);
}

static void unlock(struct dict *d)
{
    pthread_mutex_unlock(&d->h->lock);
}

/* ---- the LRU list (under the lock) */

#define E(d, i) (&(d)->e[(i) - 1])

static void lru_unlink(struct dict *d, uint32_t i)
{
    struct entry *x = E(d, i);

    if (x->prev) E(d, x->prev)->next = x->next; else d->h->lru_head = x->next;
    if (x->next) E(d, x->next)->prev = x->prev; else d->h->lru_tail = x->prev;
    x->prev = x->next = 0;
}

static void lru_push(struct dict *d, uint32_t i)
{
    struct entry *x = E(d, i);

    x->prev = 0;
    x->next = d->h->lru_head;
    if (d->h->lru_head) E(d, d->h->lru_head)->prev = i;
    d->h->lru_head = i;
    if (!d->h->lru_tail) d->h->lru_tail = i;
}

static void remove_entry(struct dict *d, uint32_t i)
{
    struct entry *x = E(d, i);
    uint32_t *pp = &d->buckets[x->hash % d->h->nbuckets];

    while (*pp != i) pp = &E(d, *pp)->hnext;
    *pp = x->hnext;
    lru_unlink(d, i);
    x->used = 0;
    x->next = d->h->free_head;
    d->h->free_head = i;
}

/* The entry of key (expired ones removed on the way), or 0. */
static uint32_t find(struct dict *d, const char *k, size_t klen, uint32_t hash)
{
    uint32_t i = d->buckets[hash % d->h->nbuckets];

    while (i) {
        struct entry *x = E(d, i);
        uint32_t next = x->hnext;
        if (x->hash == hash && x->klen == klen && !memcmp(x->data, k, klen)) {
            if (x->expires > 0 && x->expires <= now()) {
                remove_entry(d, i);
                return 0;
            }
            return i;
        }
        i = next;
    }
    return 0;
}

/* A free entry for key, linked in; the least recently used one is evicted when none is free. */
static uint32_t insert(struct dict *d, const char *k, size_t klen, uint32_t hash)
{
    uint32_t i = d->h->free_head;
    struct entry *x;

    if (!i) {
        remove_entry(d, d->h->lru_tail);
        i = d->h->free_head;
    }
    x = E(d, i);
    d->h->free_head = x->next;
    memset(x, 0, offsetof(struct entry, data));
    x->used = 1;
    x->hash = hash;
    x->klen = (uint16_t)klen;
    memcpy(x->data, k, klen);
    x->hnext = d->buckets[hash % d->h->nbuckets];
    d->buckets[hash % d->h->nbuckets] = i;
    lru_push(d, i);
    return i;
}

/* ---- Lua
 *
 * Nothing that can raise runs under a lock: Lua raises by longjmp, past the unlock, and a
 * dict left locked hangs every later user (the same process for ever; the other workers
 * until the watchdog). So arguments are checked before locking, a value is copied out of
 * its entry under the lock, and only pushed (an allocation, which can fail under
 * lua_call_memory) once the lock is released. Argument errors name the method: a method
 * called through __index has no name of its own in Lua's "bad argument" messages. */

/* A value as read under the lock, pushed after it. */
struct value {
    uint8_t type;
    uint32_t len;
    double num;
    char s[ENTRY_DATA];
};

static struct dict *check_dict(lua_State *L, const char *method)
{
    void *p = lua_touserdata(L, 1);
    int ok = 0;

    if (p && lua_getmetatable(L, 1)) {
        luaL_getmetatable(L, DICT_MT);
        ok = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
    }
    if (!ok) luaL_error(L, "%s: call it as dict:%s(...), on a dict from core.shared", method, method);
    return *(struct dict **)p;
}

static const char *check_key(lua_State *L, const char *method, size_t *len)
{
    const char *k;

    if (lua_type(L, 2) != LUA_TSTRING && lua_type(L, 2) != LUA_TNUMBER)
        luaL_error(L, "%s: key must be a string, not %s", method, luaL_typename(L, 2));
    k = lua_tolstring(L, 2, len);
    if (*len == 0) luaL_error(L, "%s: empty key", method);
    if (*len > 255) luaL_error(L, "%s: key longer than 255 bytes", method);
    return k;
}

static double check_number(lua_State *L, int idx, const char *method, const char *what)
{
    if (lua_type(L, idx) != LUA_TNUMBER)
        luaL_error(L, "%s: %s must be a number, not %s", method, what, luaL_typename(L, idx));
    return lua_tonumber(L, idx);
}

static double check_ttl(lua_State *L, int idx, const char *method)
{
    double ttl = lua_isnoneornil(L, idx) ? 0 : check_number(L, idx, method, "ttl");

    if (!(ttl >= 0)) luaL_error(L, "%s: ttl must be >= 0 (0: never expires)", method);
    return ttl > 0 ? now() + ttl : 0;
}

/* Under the lock: raises nothing. */
static void copy_value(struct value *v, const struct entry *x)
{
    v->type = x->type;
    v->num = x->num;
    v->len = x->type == T_STRING ? x->vlen : 0;
    memcpy(v->s, x->data + x->klen, v->len);
}

static int push_value(lua_State *L, const struct value *v)
{
    switch (v->type) {
    case T_STRING: lua_pushlstring(L, v->s, v->len); break;
    case T_NUMBER: lua_pushnumber(L, v->num); break;
    case T_BOOLEAN: lua_pushboolean(L, v->num != 0); break;
    default: lua_pushnil(L);
    }
    return 1;
}

/* dict:get(key) -> value | nil */
static int dict_get(lua_State *L)
{
    struct dict *d = check_dict(L, "get");
    size_t klen;
    const char *k = check_key(L, "get", &klen);
    struct value v;
    uint32_t i;

    v.type = T_NONE;
    lock(d);
    i = find(d, k, klen, hash_of(k, klen));
    if (i) {
        lru_unlink(d, i);
        lru_push(d, i);
        copy_value(&v, E(d, i));
    }
    unlock(d);
    return push_value(L, &v);
}

/* dict:set(key, value [, ttl]) -> true | nil, err; a nil value deletes. */
static int dict_set(lua_State *L)
{
    struct dict *d = check_dict(L, "set");
    size_t klen, vlen = 0;
    const char *k = check_key(L, "set", &klen), *v = NULL;
    int type = lua_type(L, 3);
    double expires = check_ttl(L, 4, "set"), num = 0;
    uint32_t hash = hash_of(k, klen), i;

    if (type == LUA_TSTRING) {
        v = lua_tolstring(L, 3, &vlen);
        if (klen + vlen > ENTRY_DATA) {
            lua_pushnil(L);
            lua_pushfstring(L, "too large (key and value: at most %d bytes)", ENTRY_DATA);
            return 2;
        }
    } else if (type == LUA_TNUMBER) {
        num = lua_tonumber(L, 3);
    } else if (type == LUA_TBOOLEAN) {
        num = lua_toboolean(L, 3);
    } else if (type != LUA_TNIL) {
        return luaL_error(L, "set: value must be a string, number, boolean or nil, not %s",
                          luaL_typename(L, 3));
    }
    lock(d);
    i = find(d, k, klen, hash);
    if (type == LUA_TNIL) {
        if (i) remove_entry(d, i);
    } else {
        struct entry *x;
        if (!i) i = insert(d, k, klen, hash);
        else {
            lru_unlink(d, i);
            lru_push(d, i);
        }
        x = E(d, i);
        x->type = type == LUA_TSTRING ? T_STRING : type == LUA_TNUMBER ? T_NUMBER : T_BOOLEAN;
        x->num = num;
        x->vlen = (uint32_t)vlen;
        if (vlen) memcpy(x->data + klen, v, vlen);
        x->expires = expires;
    }
    unlock(d);
    lua_pushboolean(L, 1);
    return 1;
}

/* dict:incr(key, by [, init [, ttl]]) -> new value | nil, err. Atomic across workers. A
 * missing key starts at init (and then lives ttl seconds); without init it is an error. */
static int dict_incr(lua_State *L)
{
    struct dict *d = check_dict(L, "incr");
    size_t klen;
    const char *k = check_key(L, "incr", &klen);
    double by = check_number(L, 3, "incr", "by"), value = 0;
    int has_init = !lua_isnoneornil(L, 4);
    double init = has_init ? check_number(L, 4, "incr", "init") : 0, expires = check_ttl(L, 5, "incr");
    uint32_t hash = hash_of(k, klen), i;
    const char *err = NULL;

    lock(d);
    i = find(d, k, klen, hash);
    if (!i && !has_init) {
        err = "not found";
    } else if (!i) {
        struct entry *x = E(d, (i = insert(d, k, klen, hash)));
        x->type = T_NUMBER;
        x->num = value = init + by;
        x->expires = expires;
    } else if (E(d, i)->type != T_NUMBER) {
        err = "not a number";
    } else {
        value = E(d, i)->num += by;
        lru_unlink(d, i);
        lru_push(d, i);
    }
    unlock(d);
    if (err) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_pushnumber(L, value);
    return 1;
}

/* dict:delete(key) */
static int dict_delete(lua_State *L)
{
    struct dict *d = check_dict(L, "delete");
    size_t klen;
    const char *k = check_key(L, "delete", &klen);
    uint32_t i;

    lock(d);
    if ((i = find(d, k, klen, hash_of(k, klen)))) remove_entry(d, i);
    unlock(d);
    return 0;
}

/* dict:keys([max]) -> { key, ... }: the live keys, most recently used first, at most max
 * (default 1024, 0: all). Copied under the lock into a userdata (collected even if a push
 * below raises), pushed after it. */
static int dict_keys(lua_State *L)
{
    struct dict *d = check_dict(L, "keys");
    lua_Integer max = luaL_optinteger(L, 2, 1024);
    double t = now();
    char *copy;
    size_t used = 0;
    uint32_t n = 0;

    if (max <= 0 || max > d->h->nentries) max = d->h->nentries;
    copy = lua_newuserdata(L, (size_t)max * (2 + 255));     /* a key is 255 bytes at most */
    lock(d);
    for (uint32_t i = d->h->lru_head; i && n < max; i = E(d, i)->next) {
        struct entry *x = E(d, i);
        if (x->expires && x->expires <= t) continue;
        memcpy(copy + used, &x->klen, 2);
        memcpy(copy + used + 2, x->data, x->klen);
        used += 2 + x->klen;
        n++;
    }
    unlock(d);
    lua_createtable(L, (int)n, 0);
    for (uint32_t k = 0, at = 0; k < n; k++) {
        uint16_t len;
        memcpy(&len, copy + at, 2);
        lua_pushlstring(L, copy + at + 2, len);
        lua_rawseti(L, -2, (int)k + 1);
        at += 2 + len;
    }
    return 1;
}

/* dict:capacity() -> how many entries it holds at most */
static int dict_capacity(lua_State *L)
{
    lua_pushinteger(L, check_dict(L, "capacity")->h->nentries);
    return 1;
}

/* core.shared(name) -> dict | nil, "no shared dict NAME" */
static int core_shared(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);

    for (int i = 0; i < ndicts; i++) {
        if (strcmp(dicts[i].name, name)) continue;
        *(struct dict **)lua_newuserdata(L, sizeof(struct dict *)) = &dicts[i];
        luaL_getmetatable(L, DICT_MT);
        lua_setmetatable(L, -2);
        return 1;
    }
    lua_pushnil(L);
    lua_pushfstring(L, "no shared dict '%s' (declare it in server{ shared = { %s = \"1m\" } })", name, name);
    return 2;
}

static const luaL_Reg dict_methods[] = {
    { "get", dict_get }, { "set", dict_set }, { "incr", dict_incr }, { "delete", dict_delete },
    { "capacity", dict_capacity }, { "keys", dict_keys }, { NULL, NULL },
};

void np_shdict_open(lua_State *L)
{
    if (luaL_newmetatable(L, DICT_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, dict_methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, core_shared);
    lua_setfield(L, -2, "shared");
}
