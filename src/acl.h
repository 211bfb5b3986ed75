/* Access control at accept time: Net::Server's cidr_allow / cidr_deny, for IPv4 and IPv6. */
#ifndef NP_ACL_H
#define NP_ACL_H
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct np_cidr {
    int family;                 /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    int prefix;                 /* bits */
    char text[64];
};

struct np_acl {
    struct np_cidr *allow, *deny;
    int nallow, ndeny;
};

/* Parses "10.0.0.0/8", "192.0.2.1", "2001:db8::/32" or "::1". 0, or -1 when malformed. */
int np_cidr_parse(const char *s, struct np_cidr *out);

/* Adds a parsed CIDR to the allow (allow != 0) or deny list. 0, or -1 when out of memory. */
int np_acl_add(struct np_acl *acl, int allow, const struct np_cidr *c);

/* NULL when sa may connect, else the rule that refuses it ("deny 10.0.0.0/8", "not in allow").
 * A deny match refuses; a non-empty allow list refuses what it does not match. IPv4
 * clients seen on an IPv6 socket (::ffff:a.b.c.d) are matched as IPv4. */
const char *np_acl_refuses(const struct np_acl *acl, const struct sockaddr *sa);

void np_acl_free(struct np_acl *acl);

#endif
