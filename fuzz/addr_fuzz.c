/* SPDX-License-Identifier: MIT */
/*
 * addr_fuzz.c: libFuzzer target for the address parsers: every text is
 * either refused cleanly or classified as an IP that formats and parses back
 * to itself, or as a name that no libc path reads as a number. The resolver
 * is never asked (getaddrinfo only with AI_NUMERICHOST, as an oracle).
 */
#include "pbx.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TEXT 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *text, const char *what)
{
	fprintf(stderr, "addr_fuzz: %s: \"%s\"\n", what, text);
	abort();
}

/*
 * The rule, restated apart from addr.c: text whose dot-separated labels
 * are all empty, decimal digits or 0x hex, with at least one label, is a
 * number.
 */
static bool
numeric_text(const char *s)
{
	bool any = false;

	while (true) {
		size_t len = strcspn(s, ".");
		size_t i = 0;
		if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
			i = 2;
			while (
			    i < len && strchr("0123456789abcdefABCDEF", s[i]))
				i++;
		} else {
			while (i < len && s[i] >= '0' && s[i] <= '9')
				i++;
		}
		if (i != len)
			return false;
		any = any || len > 0;
		if (s[len] == '\0')
			return any;
		s += len + 1;
	}
}

/* libc's own numeric reading (no look-up can happen with NUMERICHOST). */
static bool
libc_numeric(const char *host, struct pbx_addr *out)
{
	struct addrinfo hints = {
	    .ai_flags = AI_NUMERICHOST,
	    .ai_family = AF_UNSPEC,
	    .ai_socktype = SOCK_STREAM,
	};
	struct addrinfo *res;

	if (getaddrinfo(host, NULL, &hints, &res) != 0)
		return false;
	memset(out, 0, sizeof *out);
	if (res->ai_addrlen <= sizeof out->u) {
		memcpy(&out->u, res->ai_addr, res->ai_addrlen);
		out->len = res->ai_addrlen;
	}
	freeaddrinfo(res);
	return true;
}

/* Same address and port, an IPv4-mapped IPv6 address equal to its IPv4. */
static bool
same_addr(const struct pbx_addr *a, const struct pbx_addr *b)
{
	if (pbx_addr_port(a) != pbx_addr_port(b))
		return false;
	if (pbx_addr_family(a) == AF_INET6 && pbx_addr_family(b) == AF_INET6)
		return memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, 16) ==
			   0 &&
		       a->u.in6.sin6_scope_id == b->u.in6.sin6_scope_id;
	if (pbx_addr_family(a) == AF_INET6)
		return IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr) &&
		       memcmp(&a->u.in6.sin6_addr.s6_addr[12],
			   &b->u.in4.sin_addr, 4) == 0;
	if (pbx_addr_family(b) == AF_INET6)
		return same_addr(b, a);
	return a->u.in4.sin_addr.s_addr == b->u.in4.sin_addr.s_addr;
}

/* "IP:PORT" as formatted parses back to the same address. */
static void
check_round_trip(const char *text, const struct pbx_addr *a)
{
	char buf[PBX_ADDR_STRLEN];
	struct pbx_hostport hp;
	struct pbx_addr b;

	if (pbx_addr_format(a, buf, sizeof buf) < 0)
		fail(text, "format failed");
	if (pbx_hostport_parse(buf, 0, &hp, NULL) != 0)
		fail(text, "its formatted address does not parse");
	if (pbx_addr_parse_ip(hp.host, hp.port, &b) != 0)
		fail(text, "its formatted host is not an IP");
	if (!same_addr(a, &b))
		fail(text, "format and parse do not round-trip");
}

/* An IP given alone: strict (inet_pton), and dotted quads one spelling. */
static void
check_ip(const char *text)
{
	struct pbx_addr a;
	char buf[PBX_ADDR_STRLEN];
	unsigned char raw[16];

	int r = pbx_addr_parse_ip(text, 7, &a);
	bool v6 = strchr(text, ':') != NULL;
	if (strchr(text, '%') == NULL &&
	    (r == 0) != (inet_pton(v6 ? AF_INET6 : AF_INET, text, raw) == 1))
		fail(text, "parse_ip and inet_pton disagree");
	if (r != 0) {
		if (r != -EINVAL)
			fail(text, "parse_ip failed with another error");
		return;
	}
	if (pbx_addr_family(&a) != (v6 ? AF_INET6 : AF_INET))
		fail(text, "parse_ip gave the wrong family");
	if (pbx_addr_port(&a) != 7)
		fail(text, "parse_ip lost the port");
	if (pbx_addr_format_ip(&a, buf, sizeof buf) < 0)
		fail(text, "format_ip failed");
	if (!v6 && strcmp(buf, text) != 0)
		fail(text, "a dotted quad does not format back to itself");
	check_round_trip(text, &a);
}

/* What the parser accepted as a host is an IP, or a name and no number. */
static void
check_host(const char *text, const struct pbx_hostport *hp)
{
	struct pbx_addr a, libc, out[2];
	struct in_addr v4;
	char buf[PBX_ADDR_STRLEN];
	const char *h = hp->host;

	if (h[0] == '\0') {
		if (hp->bracketed)
			fail(text, "empty host in brackets");
		return;
	}
	bool ip = pbx_addr_parse_ip(h, hp->port, &a) == 0;
	if (hp->bracketed && (!ip || pbx_addr_family(&a) != AF_INET6))
		fail(text, "a bracketed host that is not IPv6");
	if (!hp->bracketed && strchr(h, ':') != NULL)
		fail(text, "an IPv6 host without brackets");
	if (ip) {
		if (pbx_addr_resolve(hp, PBX_RESOLVE_NUMERIC, out, 2) != 1 ||
		    !same_addr(&a, &out[0]))
			fail(text, "resolve disagrees with parse_ip");
		/* glibc takes a scope name on link-local addresses only
		 * (pbx on any IPv6 address, as documented): no oracle. */
		bool scoped = strchr(h, '%') != NULL;
		if (!scoped && !libc_numeric(h, &libc))
			fail(text, "an IP that libc does not read");
		pbx_addr_set_port(&libc, hp->port);
		if (!scoped && !same_addr(&a, &libc))
			fail(text, "libc reads the IP as another address");
		if (!hp->bracketed &&
		    (pbx_addr_format_ip(&a, buf, sizeof buf) < 0 ||
			strcmp(buf, h) != 0))
			fail(text,
			    "a dotted quad does not format back to itself");
		check_round_trip(text, &a);
		return;
	}
	/* A name: nothing inet_aton, so getaddrinfo, reads as an address. */
	if (inet_aton(h, &v4) != 0)
		fail(text, "a name that inet_aton reads as an address");
	if (libc_numeric(h, &libc))
		fail(text, "a name that getaddrinfo reads as an address");
	if (numeric_text(h))
		fail(text, "a name made of numbers");
	if (pbx_addr_resolve(hp, PBX_RESOLVE_NUMERIC, out, 2) != PBX_EAI_NONAME)
		fail(text, "a name that resolves without the resolver");
}

static bool
same_hostport(const struct pbx_hostport *a, const struct pbx_hostport *b)
{
	return strcmp(a->host, b->host) == 0 && a->port == b->port &&
	       a->has_port == b->has_port && a->bracketed == b->bracketed;
}

/* One parse: a clean refusal, or a result that check_host accepts. */
static int
parse_one(const char *text, int flags, struct pbx_hostport *hp)
{
	struct pbx_parse_error err = {0};
	struct pbx_hostport again;

	int r = pbx_hostport_parse(text, flags, hp, &err);
	if (pbx_hostport_parse(text, flags, &again, NULL) != r)
		fail(text, "the result depends on err being NULL");
	if (r != 0) {
		if (r != -EINVAL || err.part == NULL || err.reason == NULL ||
		    err.offset + err.length > strlen(text))
			fail(text, "an unclean refusal");
		return r;
	}
	if (!same_hostport(hp, &again))
		fail(text, "two parses differ");
	/* The port colon: after ']', or any colon (a bare host has none). */
	const char *close = strchr(text, ']');
	bool colon = hp->bracketed ? close != NULL && close[1] == ':'
				   : strchr(text, ':') != NULL;
	if (hp->has_port != colon)
		fail(text, "has_port does not match the text");
	if (!hp->has_port && !(flags & PBX_PARSE_PORT_OPTIONAL))
		fail(text, "no port without PBX_PARSE_PORT_OPTIONAL");
	check_host(text, hp);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char text[MAX_TEXT + 1];
	struct pbx_hostport strict, loose;

	if (size > MAX_TEXT)
		size = MAX_TEXT;
	memcpy(text, data, size);
	text[size] = '\0';

	int r0 = parse_one(text, 0, &strict);
	int r1 = parse_one(text, PBX_PARSE_PORT_OPTIONAL, &loose);
	/* An optional port only adds texts without one. */
	if (r0 == 0 && (r1 != 0 || !same_hostport(&strict, &loose)))
		fail(text, "PBX_PARSE_PORT_OPTIONAL refused a full address");
	if (r1 == 0 && loose.has_port && r0 != 0)
		fail(text, "a port is accepted only when optional");
	check_ip(text);
	return 0;
}
