/* SPDX-License-Identifier: MIT */
/*
 * proxy_header_fuzz.c: libFuzzer target for the PROXY protocol header. The
 * input is what a peer sent; the server parses every growing prefix of it,
 * so every prefix is parsed here too, and the results must tell one story:
 * "need more" until the header's fate is decided, then the same verdict
 * (length, or error and reason) for every longer prefix. A parsed header
 * must build and parse back to the same addresses. The input's first 38
 * bytes are also read as two addresses to build and parse back.
 */
#include "../src/serve/proxy_header.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Twice the longest header: room for payload after it. */
#define MAX_INPUT (2 * PROXY_HEADER_MAX)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *what, size_t k, ssize_t r, const char *why)
{
	fprintf(stderr, "proxy_header_fuzz: %s (prefix %zu: %zd, %s)\n", what,
	    k, r, why ? why : "no reason");
	abort();
}

/* An address as 16 bytes (IPv4 mapped) and a port, to compare across
 * families: build sends a mapped pair as TCP4. */
static void
flat(const struct pbx_addr *a, uint8_t ip[16], uint16_t *port)
{
	memset(ip, 0, 16);
	if (a->u.sa.sa_family == AF_INET) {
		ip[10] = ip[11] = 0xff;
		memcpy(ip + 12, &a->u.in4.sin_addr, 4);
		*port = ntohs(a->u.in4.sin_port);
		return;
	}
	memcpy(ip, &a->u.in6.sin6_addr, 16);
	*port = ntohs(a->u.in6.sin6_port);
}

static bool
same(const struct pbx_addr *a, const struct pbx_addr *b)
{
	uint8_t ia[16], ib[16];
	uint16_t pa, pb;
	flat(a, ia, &pa);
	flat(b, ib, &pb);
	return pa == pb && memcmp(ia, ib, 16) == 0;
}

static bool
sane_addr(const struct pbx_addr *a)
{
	if (a->u.sa.sa_family == AF_INET)
		return a->len == sizeof a->u.in4;
	return a->u.sa.sa_family == AF_INET6 && a->len == sizeof a->u.in6 &&
	       a->u.in6.sin6_scope_id == 0 && a->u.in6.sin6_flowinfo == 0;
}

/* What a complete header must look like, whatever the input was. */
static void
check_header(const struct proxy_header *h, ssize_t r, size_t n)
{
	if ((size_t)r > n || h->len != (size_t)r || r > PROXY_HEADER_MAX)
		fail("length out of bounds", n, r, NULL);
	if (h->version != 1 && h->version != 2)
		fail("bad version", n, r, NULL);
	if (h->version == 1 && r > PROXY_V1_MAX)
		fail("v1 header longer than 107 bytes", n, r, NULL);
	if (h->local && (h->source.len != 0 || h->dest.len != 0))
		fail("local header with addresses", n, r, NULL);
	if (!h->local &&
	    (!sane_addr(&h->source) || !sane_addr(&h->dest) ||
		h->source.u.sa.sa_family != h->dest.u.sa.sa_family))
		fail("bad addresses", n, r, NULL);
	if (memchr(h->authority, '\0', sizeof h->authority) == NULL ||
	    memchr(h->ssl.version, '\0', sizeof h->ssl.version) == NULL ||
	    h->unique_id_len > PROXY_UNIQUE_ID_MAX)
		fail("TLV values out of bounds", n, r, NULL);
}

/* build(parse(x)) parses back to the same addresses. */
static void
check_rebuild(const struct proxy_header *h)
{
	uint8_t b[PROXY_V1_MAX + 64];
	struct proxy_header back;
	const char *why = NULL;
	ssize_t n = proxy_header_build(h->version, h->local ? NULL : &h->source,
	    h->local ? NULL : &h->dest, b, sizeof b);
	if (n <= 0)
		fail("build of a parsed header failed", 0, n, NULL);
	ssize_t r =
	    proxy_header_parse(b, (size_t)n, (unsigned)h->version, &back, &why);
	if (r != n || back.version != h->version || back.local != h->local)
		fail("a built header does not parse back", (size_t)n, r, why);
	if (!h->local &&
	    (!same(&back.source, &h->source) || !same(&back.dest, &h->dest)))
		fail("rebuilt addresses differ", (size_t)n, r, NULL);
}

static bool
is_mapped(const struct pbx_addr *a)
{
	return a->u.sa.sa_family == AF_INET6 &&
	       IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr);
}

/*
 * Where the header has one spelling only, build must reproduce it byte
 * for byte: a v1 TCP4 line (a dotted quad without leading zeros and a
 * port without them are unique), and a v2 TCP4/TCP6 header without TLVs
 * (unless both addresses are mapped: build sends those as TCP4). This is
 * what catches a parser that is lax where the spec is strict (a port
 * 65536 read as 0, 192.0.2.07 read as 192.0.2.7).
 */
static void
check_canonical(const uint8_t *data, const struct proxy_header *h)
{
	uint8_t b[PROXY_V1_MAX];
	bool v1 = h->version == 1 && h->source.u.sa.sa_family == AF_INET;
	bool v2 = h->version == 2 &&
		  ((data[13] == 0x11 && h->len == 28) ||
		      (data[13] == 0x21 && h->len == 52 &&
			  !(is_mapped(&h->source) && is_mapped(&h->dest))));
	if (h->local || !(v1 || v2))
		return;
	ssize_t n =
	    proxy_header_build(h->version, &h->source, &h->dest, b, sizeof b);
	if (n != (ssize_t)h->len || memcmp(b, data, h->len) != 0)
		fail("a header with one spelling is not rebuilt byte for byte",
		    h->len, n, NULL);
}

/*
 * The verdict on k bytes, checked against the one on fewer: once it is
 * not "need more" it never changes (same length, or same error and the
 * same static reason).
 */
static void
check_prefix(
    const uint8_t *data, size_t k, ssize_t *verdict, const char **reason)
{
	struct proxy_header h;
	const char *why = NULL;
	ssize_t r = proxy_header_parse(data, k, PROXY_V1 | PROXY_V2, &h, &why);
	if (r < 0 && r != -EINVAL && r != -EPROTONOSUPPORT)
		fail("unexpected error code", k, r, why);
	if ((r < 0) != (why != NULL) || (why != NULL && why[0] == '\0'))
		fail("a reason without an error or the reverse", k, r, why);
	if (r == 0 && k >= PROXY_HEADER_MAX)
		fail("need more with PROXY_HEADER_MAX bytes", k, r, why);
	if (r > 0)
		check_header(&h, r, k);
	if (*verdict != 0 && (r != *verdict || why != *reason))
		fail("the verdict changed with more bytes", k, r, why);
	*verdict = r;
	*reason = why;
}

/* The input as a v1|v2 parser sees it, prefix by prefix. */
static void
fuzz_parse(const uint8_t *data, size_t size)
{
	ssize_t verdict = 0;
	const char *reason = NULL;
	/* Every prefix until the verdict (cheap: a v1 line is decided by
	 * byte 107, and an undecided v2 prefix is only its fixed 16 bytes),
	 * then ever fewer: the payload after a header changes nothing. */
	size_t k = 0, step = 1;
	while (k <= size) {
		check_prefix(data, k, &verdict, &reason);
		if (verdict != 0)
			step *= 2;
		k += step;
	}
	check_prefix(data, size, &verdict, &reason);
	if (verdict <= 0)
		return;
	struct proxy_header h;
	const char *why = NULL;
	proxy_header_parse(data, size, PROXY_V1 | PROXY_V2, &h, &why);
	check_rebuild(&h);
	check_canonical(data, &h);
	/* A listener for its version only says the same; the other says
	 * "not supported". */
	unsigned own = h.version == 1 ? PROXY_V1 : PROXY_V2;
	struct proxy_header again;
	if (proxy_header_parse(data, size, own, &again, &why) != verdict)
		fail("its own version alone parses differently", size, 0, why);
	if (proxy_header_parse(data, size, own ^ 3u, &again, &why) !=
	    -EPROTONOSUPPORT)
		fail("the other version alone accepts it", size, 0, why);
}

/* Bytes as an address: family bit, 16 address bytes, 2 port bytes. */
static void
addr_from(const uint8_t *p, struct pbx_addr *a)
{
	memset(a, 0, sizeof *a);
	uint16_t port = (uint16_t)(p[17] << 8 | p[18]);
	if (p[0] & 1) {
		a->u.in4.sin_family = AF_INET;
		a->u.in4.sin_port = htons(port);
		memcpy(&a->u.in4.sin_addr, p + 1, 4);
		a->len = sizeof a->u.in4;
		return;
	}
	a->u.in6.sin6_family = AF_INET6;
	a->u.in6.sin6_port = htons(port);
	memcpy(&a->u.in6.sin6_addr, p + 1, 16);
	a->len = sizeof a->u.in6;
}

/* Any two addresses build, in both versions, and parse back. */
static void
fuzz_build(const uint8_t *data, size_t size)
{
	struct proxy_header h;
	if (size < 38)
		return;
	addr_from(data, &h.source);
	addr_from(data + 19, &h.dest);
	h.local = false;
	for (h.version = 1; h.version <= 2; h.version++)
		check_rebuild(&h);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > MAX_INPUT)
		return 0;
	/* A heap copy of exactly size bytes: ASan sees a read past it. */
	uint8_t *copy = malloc(size > 0 ? size : 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	fuzz_parse(copy, size);
	fuzz_build(copy, size);
	free(copy);
	return 0;
}
