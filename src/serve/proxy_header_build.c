/* SPDX-License-Identifier: MIT */
/*
 * proxy_header_build.c: the PROXY protocol header (v1 or v2) that says
 * who connected, built for a dialled upstream.
 */
#include "proxy_header_build.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Both ends in one family, as the header has one (see the .h). */
struct endpoints {
	int family;
	uint8_t ip[2][16];
	uint16_t port[2];
};

static bool
is_v4(const struct pbx_addr *a)
{
	return a->u.sa.sa_family == AF_INET ||
	       IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr);
}

/* The address as 4 bytes (family AF_INET) or 16 (AF_INET6). */
static void
get_ip(const struct pbx_addr *a, int family, uint8_t *ip, uint16_t *port)
{
	static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};
	if (a->u.sa.sa_family == AF_INET) {
		*port = ntohs(a->u.in4.sin_port);
		if (family == AF_INET6)
			memcpy(ip, mapped, sizeof mapped);
		memcpy(
		    ip + (family == AF_INET6 ? 12 : 0), &a->u.in4.sin_addr, 4);
		return;
	}
	*port = ntohs(a->u.in6.sin6_port);
	memcpy(ip, a->u.in6.sin6_addr.s6_addr + (family == AF_INET ? 12 : 0),
	    family == AF_INET ? 4 : 16);
}

static ssize_t
unify(
    const struct pbx_addr *src, const struct pbx_addr *dst, struct endpoints *e)
{
	const struct pbx_addr *a[2] = {src, dst};
	for (int i = 0; i < 2; i++) {
		int fam = a[i]->u.sa.sa_family;
		if (fam != AF_INET && fam != AF_INET6)
			return -EAFNOSUPPORT;
	}
	e->family = is_v4(src) && is_v4(dst) ? AF_INET : AF_INET6;
	for (int i = 0; i < 2; i++)
		get_ip(a[i], e->family, e->ip[i], &e->port[i]);
	return 0;
}

static ssize_t
put(void *buf, size_t size, const void *p, size_t len)
{
	if (len > size)
		return -ENOSPC;
	memcpy(buf, p, len);
	return (ssize_t)len;
}

static ssize_t
build_v1(const struct endpoints *e, void *buf, size_t size)
{
	char ip[2][INET6_ADDRSTRLEN], line[PROXY_V1_MAX + 1];
	for (int i = 0; i < 2; i++) {
		if (inet_ntop(e->family, e->ip[i], ip[i], sizeof ip[i]) == NULL)
			return -EAFNOSUPPORT;
	}
	int len = snprintf(line, sizeof line, "PROXY TCP%c %s %s %u %u\r\n",
	    e->family == AF_INET ? '4' : '6', ip[0], ip[1],
	    (unsigned)e->port[0], (unsigned)e->port[1]);
	return put(buf, size, line, (size_t)len);
}

static ssize_t
build_v2(const struct endpoints *e, void *buf, size_t size)
{
	uint8_t h[V2_FIXED + 36];
	size_t ipn = e->family == AF_INET ? 4 : 16, block = 2 * ipn + 4;
	memcpy(h, proxy_v2_sig, sizeof proxy_v2_sig);
	h[12] = 0x20 | V2_PROXY;
	h[13] = e->family == AF_INET ? 0x11 : 0x21;
	h[14] = 0;
	h[15] = (uint8_t)block;
	memcpy(h + V2_FIXED, e->ip[0], ipn);
	memcpy(h + V2_FIXED + ipn, e->ip[1], ipn);
	for (int i = 0; i < 2; i++) {
		h[V2_FIXED + 2 * ipn + 2 * i] = (uint8_t)(e->port[i] >> 8);
		h[V2_FIXED + 2 * ipn + 2 * i + 1] = (uint8_t)e->port[i];
	}
	return put(buf, size, h, V2_FIXED + block);
}

ssize_t
proxy_header_build(int version, const struct pbx_addr *src,
    const struct pbx_addr *dst, void *buf, size_t size)
{
	static const uint8_t v2_local[4] = {0x20 | V2_LOCAL, 0x00, 0, 0};
	struct endpoints e;
	if (version != 1 && version != 2)
		return -EINVAL;
	if (src == NULL || dst == NULL || src->len == 0 || dst->len == 0) {
		if (version == 1)
			return put(buf, size, "PROXY UNKNOWN\r\n", 15);
		if (size < V2_FIXED)
			return -ENOSPC;
		memcpy(buf, proxy_v2_sig, sizeof proxy_v2_sig);
		memcpy((uint8_t *)buf + sizeof proxy_v2_sig, v2_local, 4);
		return V2_FIXED;
	}
	ssize_t r = unify(src, dst, &e);
	if (r < 0)
		return r;
	return version == 1 ? build_v1(&e, buf, size) : build_v2(&e, buf, size);
}
