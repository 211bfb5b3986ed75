/* Access control at accept time: Net::Server's cidr_allow / cidr_deny, for IPv4 and IPv6. */
#include "acl.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int np_cidr_parse(const char *s, struct np_cidr *out)
{
    char ip[64], *slash, *end;
    long prefix;

    if (strlen(s) >= sizeof ip) return -1;
    memset(out, 0, sizeof *out);
    snprintf(out->text, sizeof out->text, "%s", s);
    snprintf(ip, sizeof ip, "%s", s);
    slash = strchr(ip, '/');
    if (slash) *slash = '\0';
    if (inet_pton(AF_INET, ip, out->addr) == 1) out->family = AF_INET;
    else if (inet_pton(AF_INET6, ip, out->addr) == 1) out->family = AF_INET6;
    else return -1;
    out->prefix = out->family == AF_INET ? 32 : 128;
    if (slash) {
        prefix = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end || prefix < 0 || prefix > out->prefix) return -1;
        out->prefix = (int)prefix;
    }
    return 0;
}

int np_acl_add(struct np_acl *acl, int allow, const struct np_cidr *c)
{
    struct np_cidr **list = allow ? &acl->allow : &acl->deny;
    int *n = allow ? &acl->nallow : &acl->ndeny;
    struct np_cidr *grown = realloc(*list, (*n + 1) * sizeof **list);

    if (!grown) return -1;
    grown[(*n)++] = *c;
    *list = grown;
    return 0;
}

static int matches(const struct np_cidr *c, int family, const uint8_t *addr)
{
    int full = c->prefix / 8, rest = c->prefix % 8;

    if (c->family != family) return 0;
    if (memcmp(c->addr, addr, full) != 0) return 0;
    if (rest == 0) return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (c->addr[full] & mask) == (addr[full] & mask);
}

static const struct np_cidr *find(const struct np_cidr *list, int n, int family, const uint8_t *addr)
{
    for (int i = 0; i < n; i++)
        if (matches(&list[i], family, addr)) return &list[i];
    return NULL;
}

const char *np_acl_refuses(const struct np_acl *acl, const struct sockaddr *sa)
{
    static char why[80];
    static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    const struct np_cidr *hit;
    const uint8_t *addr;
    int family = sa->sa_family;

    if (acl->nallow == 0 && acl->ndeny == 0) return NULL;
    if (family == AF_INET) {
        addr = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else if (family == AF_INET6) {
        addr = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        if (memcmp(addr, v4mapped, 12) == 0) {
            family = AF_INET;
            addr += 12;
        }
    } else {
        return NULL;                /* unix sockets: no addresses to judge */
    }
    if ((hit = find(acl->deny, acl->ndeny, family, addr))) {
        snprintf(why, sizeof why, "deny %s", hit->text);
        return why;
    }
    if (acl->nallow > 0 && !find(acl->allow, acl->nallow, family, addr)) return "not in allow";
    return NULL;
}

void np_acl_free(struct np_acl *acl)
{
    free(acl->allow);
    free(acl->deny);
    memset(acl, 0, sizeof *acl);
}
