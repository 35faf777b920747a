/* SPDX-License-Identifier: MIT */
/*
 * proxy_header_test.c: the PROXY protocol header: the spec's and peers.md's
 * vectors byte for byte, every row of reliability.md's table (c) with its
 * exact reason and the byte at which it is refused, every prefix of every
 * valid header, and build -> parse round trips.
 */
#include "../../src/serve/proxy_header.h"
#include "addr_util.h"
#include "check.h"

#include <arpa/inet.h>

/* The v2 signature, as hex for the tables below. */
#define SIG "0D0A0D0A000D0A515549540A "

/* Hex digits to bytes; spaces are ignored. Returns the byte count. */
static size_t
unhex(const char *hex, uint8_t *out, size_t max)
{
	size_t n = 0;
	int hi = -1;
	for (const char *p = hex; *p != '\0'; p++) {
		if (*p == ' ')
			continue;
		const char *digits = "0123456789ABCDEF";
		const char *d = strchr(digits, *p);
		if (d == NULL || n == max) {
			CHECK_FAILED("unhex: bad test data at \"%s\"", p);
			return n;
		}
		if (hi < 0) {
			hi = (int)(d - digits);
			continue;
		}
		out[n++] = (uint8_t)(hi << 4 | (int)(d - digits));
		hi = -1;
	}
	if (hi >= 0)
		CHECK_FAILED("unhex: odd number of digits in \"%s\"", hex);
	return n;
}

static const char *
fmt_addr(const struct pbx_addr *a, char *buf, size_t size)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	int fam = a->u.sa.sa_family;
	const void *p = fam == AF_INET ? (const void *)&a->u.in4.sin_addr
				       : (const void *)&a->u.in6.sin6_addr;
	if (a->len == 0) {
		snprintf(buf, size, "(none)");
		return buf;
	}
	inet_ntop(fam, p, ip, sizeof ip);
	snprintf(buf, size, "%s %s port %u len %u",
	    fam == AF_INET ? "inet" : "inet6", ip,
	    (unsigned)ntohs(
		fam == AF_INET ? a->u.in4.sin_port : a->u.in6.sin6_port),
	    (unsigned)a->len);
	return buf;
}

static bool
same_addr(const struct pbx_addr *a, const struct pbx_addr *b)
{
	if (a->len != b->len || a->u.sa.sa_family != b->u.sa.sa_family)
		return false;
	if (a->len == 0)
		return true;
	if (a->u.sa.sa_family == AF_INET)
		return a->u.in4.sin_port == b->u.in4.sin_port &&
		       a->u.in4.sin_addr.s_addr == b->u.in4.sin_addr.s_addr;
	return a->u.in6.sin6_port == b->u.in6.sin6_port &&
	       memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, 16) == 0 &&
	       a->u.in6.sin6_scope_id == 0 && a->u.in6.sin6_flowinfo == 0;
}

static void
check_addr(const char *name, const char *which, const struct pbx_addr *got,
    const struct pbx_addr *want)
{
	char g[128], w[128];
	if (!same_addr(got, want))
		CHECK_FAILED("%s: %s is %s, want %s", name, which,
		    fmt_addr(got, g, sizeof g), fmt_addr(want, w, sizeof w));
}

/* ---------------------------------------------------------------- */
/* Valid headers                                                     */
/* ---------------------------------------------------------------- */

/*
 * A valid header and what follows it. hdr and rest are text, or hex with
 * hex set; the parse must end exactly where hdr ends.
 */
struct ok_case {
	const char *name;
	bool hex;
	const char *hdr, *rest;
	bool local;
	int family; /* of both addresses, when !local */
	const char *src;
	uint16_t sport;
	const char *dst;
	uint16_t dport;
};

#define LONG_UNKNOWN                                                           \
	"PROXY UNKNOWN "                                                       \
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" \
	"xxxxxxxxxxxxxxxxxxxxxxx\r\n"
#define LONG_TCP6                                                              \
	"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "                  \
	"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
#define ADDR4 "C0000207 C0000209 04D2 0050 " /* 192.0.2.7:1234 192.0.2.9:80 */
#define ZERO8 "00000000 00000000 "
#define ZERO108                                                                \
	ZERO8 ZERO8 ZERO8 ZERO8 ZERO8 ZERO8 ZERO8 ZERO8 ZERO8 ZERO8 ZERO8      \
	    ZERO8 ZERO8 "00000000"

static const struct ok_case ok_cases[] = {
    /* reliability.md table (c) */
    {"v1 TCP4 + data", false, "PROXY TCP4 192.0.2.7 192.0.2.9 1234 80\r\n",
	"GET / HTTP/1.0\r\n\r\n", false, AF_INET, "192.0.2.7", 1234,
	"192.0.2.9", 80},
    {"v1 TCP6", false, "PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n", "", false,
	AF_INET6, "2001:db8::1", 1, "2001:db8::2", 2},
    {"v1 UNKNOWN", false, "PROXY UNKNOWN\r\n", "x", true, 0, NULL, 0, NULL, 0},
    {"v1 UNKNOWN + addresses", false,
	"PROXY UNKNOWN 192.0.2.7 192.0.2.9 1234 80\r\n", "", true, 0, NULL, 0,
	NULL, 0},
    {"v1 UNKNOWN + anything", false,
	"PROXY UNKNOWN anything, even :: \"quotes\" and  two spaces\r\n", "",
	true, 0, NULL, 0, NULL, 0},
    /* The rest of an UNKNOWN line is ignored (the spec), even if empty. */
    {"v1 UNKNOWN + space", false, "PROXY UNKNOWN \r\n", "", true, 0, NULL, 0,
	NULL, 0},
    {"v1 UNKNOWN of 107 bytes", false, LONG_UNKNOWN, "", true, 0, NULL, 0, NULL,
	0},
    {"v1 TCP4 extremes", false,
	"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", "\r\n", false,
	AF_INET, "0.0.0.0", 0, "255.255.255.255", 65535},
    {"v1 TCP6 of 104 bytes", false, LONG_TCP6, "", false, AF_INET6,
	"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
	"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535},
    {"v1 TCP6 mapped, upper case", false,
	"PROXY TCP6 ::ffff:192.0.2.7 2001:DB8::2 65535 0\r\n", "", false,
	AF_INET6, "::ffff:192.0.2.7", 65535, "2001:db8::2", 0},
    {"v1 back to back", false, "PROXY TCP4 192.0.2.7 192.0.2.9 1 2\r\n",
	"PROXY TCP4 198.51.100.1 198.51.100.2 3 4\r\n", false, AF_INET,
	"192.0.2.7", 1, "192.0.2.9", 2},
    {"v2 TCP4 (peers.md)", true, SIG "21 11 000C 7F000001 7F000001 DC04 01BB",
	"68656C6C6F", false, AF_INET, "127.0.0.1", 56324, "127.0.0.1", 443},
    {"v2 TCP6 (peers.md)", true,
	SIG "21 21 0024 20010DB8000000000000000000000001"
	    " 20010DB8000000000000000000000002 C738 01BB",
	"", false, AF_INET6, "2001:db8::1", 51000, "2001:db8::2", 443},
    {"v2 LOCAL (peers.md)", true, SIG "20 00 0000", "0D0A", true, 0, NULL, 0,
	NULL, 0},
    {"v2 LOCAL, length 12", true, SIG "20 11 000C" ADDR4, "00", true, 0, NULL,
	0, NULL, 0},
    /* LOCAL ignores the family byte (the spec: "the family is ignored"). */
    {"v2 LOCAL, family 0x45", true, SIG "20 45 0000", "", true, 0, NULL, 0,
	NULL, 0},
    {"v2 PROXY UNSPEC", true, SIG "21 00 0000", "", true, 0, NULL, 0, NULL, 0},
    {"v2 PROXY UNSPEC + NOOP", true, SIG "21 00 0005 04 0002 0000", "", true, 0,
	NULL, 0, NULL, 0},
    {"v2 UNIX stream", true, SIG "21 31 00D8 " ZERO108 ZERO108, "", true, 0,
	NULL, 0, NULL, 0},
    {"v2 TCP4 + NOOP at the end", true, SIG "21 11 000F" ADDR4 "04 0000",
	"DEADBEEF", false, AF_INET, "192.0.2.7", 1234, "192.0.2.9", 80},
    {"v2 TCP4 + ALPN, 0xE0, NETNS", true,
	SIG "21 11 001D" ADDR4 "01 0002 6832 E0 0003 010203 30 0003 6E7331", "",
	false, AF_INET, "192.0.2.7", 1234, "192.0.2.9", 80},
    /* CRC-32C computed with an independent Python implementation. */
    {"v2 TCP4 + CRC32C", true, SIG "21 11 0013" ADDR4 "03 0004 7D5D6160", "35",
	false, AF_INET, "192.0.2.7", 1234, "192.0.2.9", 80},
    {"v2 TCP6 mapped", true,
	SIG "21 21 0024 00000000000000000000FFFFC0000207"
	    " 20010DB8000000000000000000000002 0001 0002",
	"", false, AF_INET6, "::ffff:192.0.2.7", 1, "2001:db8::2", 2},
    {"v2 back to back", true, SIG "21 11 000C" ADDR4, SIG "20 00 0000", false,
	AF_INET, "192.0.2.7", 1234, "192.0.2.9", 80},
};

/* The case's bytes, header then rest, into buf; *hlen: the header's. */
static size_t
ok_bytes(const struct ok_case *c, uint8_t *buf, size_t max, size_t *hlen)
{
	if (c->hex) {
		*hlen = unhex(c->hdr, buf, max);
		return *hlen + unhex(c->rest, buf + *hlen, max - *hlen);
	}
	size_t h = strlen(c->hdr), r = strlen(c->rest);
	if (h + r > max) {
		CHECK_FAILED("%s: test data too long", c->name);
		return 0;
	}
	memcpy(buf, c->hdr, h);
	memcpy(buf + h, c->rest, r);
	*hlen = h;
	return h + r;
}

/* Parse a heap copy of exactly n bytes, so ASan sees any read past n. */
static ssize_t
parse_exact(const uint8_t *b, size_t n, unsigned versions,
    struct proxy_header *h, const char **why)
{
	uint8_t *copy = malloc(n > 0 ? n : 1);
	if (copy == NULL)
		abort();
	memcpy(copy, b, n);
	ssize_t r = proxy_header_parse(copy, n, versions, h, why);
	memset(copy, 0xaa, n);
	free(copy);
	return r;
}

static void
check_ok(const struct ok_case *c, const struct proxy_header *h, ssize_t r,
    const char *why, size_t hlen)
{
	if (r != (ssize_t)hlen) {
		CHECK_FAILED("%s: parse = %zd (%s), want %zu", c->name, r,
		    why ? why : "no reason", hlen);
		return;
	}
	if (why != NULL)
		CHECK_FAILED("%s: why is \"%s\" on success", c->name, why);
	if (h->len != hlen || h->version != (c->hex ? 2 : 1) ||
	    h->local != c->local)
		CHECK_FAILED("%s: len %zu version %d local %d, want %zu %d %d",
		    c->name, h->len, h->version, h->local, hlen, c->hex ? 2 : 1,
		    c->local);
	struct pbx_addr none = {.len = 0}, src = none, dst = none;
	if (!c->local) {
		src = mkaddr(c->family, c->src, c->sport);
		dst = mkaddr(c->family, c->dst, c->dport);
	}
	check_addr(c->name, "source", &h->source, &src);
	check_addr(c->name, "dest", &h->dest, &dst);
}

#define NCASES(t) (sizeof(t) / sizeof((t)[0]))

static void
test_proxy_header_valid(void)
{
	for (size_t i = 0; i < NCASES(ok_cases); i++) {
		const struct ok_case *c = &ok_cases[i];
		uint8_t buf[600];
		size_t hlen, n = ok_bytes(c, buf, sizeof buf, &hlen);
		unsigned own = c->hex ? PROXY_V2 : PROXY_V1;
		struct proxy_header h;
		const char *why = "unset";
		ssize_t r = parse_exact(buf, n, PROXY_V1 | PROXY_V2, &h, &why);
		check_ok(c, &h, r, why, hlen);
		r = parse_exact(buf, n, own, &h, &why);
		check_ok(c, &h, r, why, hlen);
	}
}

/* Each prefix shorter than the header is "need more", never invalid. */
static void
test_proxy_header_valid_prefixes(void)
{
	for (size_t i = 0; i < NCASES(ok_cases); i++) {
		const struct ok_case *c = &ok_cases[i];
		uint8_t buf[600];
		size_t hlen, n = ok_bytes(c, buf, sizeof buf, &hlen);
		for (size_t k = 0; k <= n; k++) {
			struct proxy_header h;
			const char *why = NULL;
			ssize_t want = k < hlen ? 0 : (ssize_t)hlen;
			ssize_t r =
			    parse_exact(buf, k, PROXY_V1 | PROXY_V2, &h, &why);
			if (r != want)
				CHECK_FAILED(
				    "%s: %zu bytes: %zd (%s), want %zd",
				    c->name, k, r, why ? why : "no reason",
				    want);
		}
	}
}

/*
 * The server's way: the bytes arrive in chunks of any size and it parses
 * all it has after each; the header is complete when the chunk that holds
 * its last byte arrives, with the same result as in one piece.
 */
static void
test_proxy_header_valid_split(void)
{
	uint32_t seed = 12345;
	for (size_t i = 0; i < NCASES(ok_cases); i++) {
		const struct ok_case *c = &ok_cases[i];
		uint8_t buf[600];
		size_t hlen, n = ok_bytes(c, buf, sizeof buf, &hlen);
		for (int round = 0; round < 50; round++) {
			size_t have = 0;
			while (have < n) {
				seed = seed * 1103515245u + 12345u;
				size_t chunk = 1 + (seed >> 16) % 9;
				have = have + chunk < n ? have + chunk : n;
				struct proxy_header h;
				const char *why = NULL;
				ssize_t r = parse_exact(
				    buf, have, PROXY_V1 | PROXY_V2, &h, &why);
				if (have < hlen)
					CHECK_EQ(r, 0);
				else
					check_ok(c, &h, r, why, hlen);
			}
		}
	}
}

/* ---------------------------------------------------------------- */
/* Invalid headers: the exact reason and the byte that decides it    */
/* ---------------------------------------------------------------- */

#define NOT_PROXY "not a PROXY protocol header"
#define V1_NOCRLF "v1 header: no CRLF within 107 bytes"
#define V1_CR "v1 header: CR not followed by LF"
#define V1_LF "v1 header: LF without a CR before it"
#define V1_BYTE "v1 header: a byte that is not printable US-ASCII"
#define V1_TWO "v1 header: two spaces in a row"
#define V1_SPCRLF "v1 header: a space before CRLF"
#define V1_AFTER "v1 header: a space after the destination port"
#define V1_FEW "v1 header: too few fields"
#define V1_PROTO "v1 header: protocol is not TCP4, TCP6 or UNKNOWN"
#define V1_SRC4 "v1 header: source address is not a TCP4 address"
#define V1_DST4 "v1 header: destination address is not a TCP4 address"
#define V1_SRC6 "v1 header: source address is not a TCP6 address"
#define V1_DST6 "v1 header: destination address is not a TCP6 address"
#define V1_SPORT "v1 header: source port is not 0-65535 without leading zeros"
#define V1_DPORT                                                               \
	"v1 header: destination port is not 0-65535 without leading zeros"
#define V2_VERSION "v2 header: version is not 2"
#define V2_COMMAND "v2 header: command is not LOCAL or PROXY"
#define V2_FAMILY "v2 header: unknown address family"
#define V2_TRANSPORT "v2 header: unknown transport protocol"
#define V2_DGRAM "v2 header: a datagram transport (UDP), not TCP"
#define V2_PAIR                                                                \
	"v2 header: a family without a transport or a transport without a family"
#define V2_LONG "v2 header: longer than 4096 bytes"
#define V2_SHORT "v2 header: length too short for the address family"
#define V2_TRUNC "v2 header: TLV truncated in its type and length"
#define V2_PAST "v2 header: TLV runs past the end of the header"
#define V2_CRCLEN "v2 header: CRC32C TLV is not 4 bytes long"
#define V2_CRC "v2 header: CRC32C does not match"
#define V2_SSLSHORT "v2 header: SSL TLV shorter than 5 bytes"
#define V2_SSLSUB "v2 header: SSL sub-TLV does not fit in the SSL TLV"
#define V2_SSLVER "v2 header: SSL version longer than 31 bytes or with a NUL"
#define V2_AUTH "v2 header: AUTHORITY longer than 255 bytes or with a NUL"
#define V2_UID "v2 header: UNIQUE_ID longer than 128 bytes"
#define V2_DUP "v2 header: a TLV that may appear once appears twice"

/*
 * An invalid input: every prefix shorter than at bytes is "need more",
 * every longer one (the whole input too) is -EINVAL with this reason.
 */
struct bad_case {
	const char *name;
	bool hex;
	const char *in;
	size_t in_len; /* text only */
	size_t at;
	const char *why;
};

/* at is given as the prefix itself, so it need not be counted by hand. */
#define BAD1(name, in, at, why)                                                \
	{                                                                      \
		name, false, in, sizeof(in) - 1, sizeof(at) - 1, why           \
	}
#define BAD1N(name, in, at, why)                                               \
	{                                                                      \
		name, false, in, sizeof(in) - 1, at, why                       \
	}
#define BAD2(name, in, at, why)                                                \
	{                                                                      \
		name, true, in, 0, at, why                                     \
	}
#define T4 "PROXY TCP4 192.0.2.7 192.0.2.9 "

static const struct bad_case bad_cases[] = {
    /* reliability.md table (c) and peers.md's negative cases */
    BAD1("port 65536", T4 "65536 80\r\n", T4 "65536", V1_SPORT),
    BAD1("dest port 65536", T4 "1234 65536\r\n", T4 "1234 65536", V1_DPORT),
    BAD1("port 100000", T4 "100000 80\r\n", T4 "100000", V1_SPORT),
    BAD1("port 080", T4 "080 80\r\n", T4 "08", V1_SPORT),
    BAD1("port 00", T4 "1234 00\r\n", T4 "1234 00", V1_DPORT),
    BAD1("port +80", T4 "+80 80\r\n", T4 "+", V1_SPORT),
    BAD1("port 12a4", T4 "12a4 80\r\n", T4 "12a", V1_SPORT),
    BAD1("192.0.2.07", "PROXY TCP4 192.0.2.07 192.0.2.9 1234 80\r\n",
	"PROXY TCP4 192.0.2.07 ", V1_SRC4),
    BAD1("010.0.0.1", "PROXY TCP4 192.0.2.7 010.0.0.1 1234 80\r\n",
	"PROXY TCP4 192.0.2.7 010.0.0.1 ", V1_DST4),
    BAD1("1..2.3", "PROXY TCP4 1..2.3 1.2.3.4 1 2\r\n", "PROXY TCP4 1..2.3 ",
	V1_SRC4),
    BAD1("IPv4 of 16 bytes", "PROXY TCP4 1.2.3.4.5.6.7.8.9 1.2.3.4 1 2\r\n",
	"PROXY TCP4 1.2.3.4.5.6.7.8.", V1_SRC4),
    BAD1("LF only", T4 "1234 80\n", T4 "1234 80\n", V1_LF),
    BAD1("CR only", T4 "1234 80\rGET / HTTP/1.0\r\n", T4 "1234 80\rG", V1_CR),
    BAD1("CR CR LF", T4 "1234 80\r\r\n", T4 "1234 80\r\r", V1_CR),
    BAD1("TCP4 with IPv6", "PROXY TCP4 2001:db8::1 2001:db8::2 1 2\r\n",
	"PROXY TCP4 2001:", V1_SRC4),
    BAD1("TCP6 with IPv4", "PROXY TCP6 192.0.2.7 192.0.2.9 1 2\r\n",
	"PROXY TCP6 192.0.2.7 ", V1_SRC6),
    BAD1("TCP6 with IPv4 dest", "PROXY TCP6 2001:db8::1 192.0.2.9 1 2\r\n",
	"PROXY TCP6 2001:db8::1 192.0.2.9 ", V1_DST6),
    BAD1("IPv6 bad digit", "PROXY TCP6 2001:db8::g ::1 1 2\r\n",
	"PROXY TCP6 2001:db8::g", V1_SRC6),
    BAD1("IPv6 scope", "PROXY TCP6 fe80::1%lo ::1 1 2\r\n",
	"PROXY TCP6 fe80::1%", V1_SRC6),
    BAD1("two spaces", "PROXY TCP4  192.0.2.7 192.0.2.9 1234 80\r\n",
	"PROXY TCP4  ", V1_TWO),
    BAD1("two spaces after PROXY", "PROXY  TCP4 192.0.2.7 192.0.2.9 1 2\r\n",
	"PROXY  ", V1_TWO),
    BAD1("two spaces before a port", T4 " 1234 80\r\n", T4 " ", V1_TWO),
    BAD1("tab", "PROXY TCP4\t192.0.2.7 192.0.2.9 1234 80\r\n", "PROXY TCP4\t",
	V1_BYTE),
    BAD1("trailing space", T4 "1234 80 \r\n", T4 "1234 80 ", V1_AFTER),
    BAD1("sixth field", T4 "1234 80 443\r\n", T4 "1234 80 ", V1_AFTER),
    BAD1("space before CRLF", "PROXY TCP4 192.0.2.7 \r\n",
	"PROXY TCP4 192.0.2.7 \r\n", V1_SPCRLF),
    BAD1("PROXY and a space", "PROXY \r\n", "PROXY \r\n", V1_SPCRLF),
    BAD1("too few fields", T4 "1234\r\n", T4 "1234\r\n", V1_FEW),
    BAD1("lower-case proxy", "proxy TCP4 192.0.2.7 192.0.2.9 1234 80\r\n", "p",
	NOT_PROXY),
    BAD1("lower-case tcp4", "PROXY tcp4 192.0.2.7 192.0.2.9 1234 80\r\n",
	"PROXY t", V1_PROTO),
    BAD1("TCP5", "PROXY TCP5 192.0.2.7 192.0.2.9 1234 80\r\n", "PROXY TCP5",
	V1_PROTO),
    BAD1("UNKNOWNX", "PROXY UNKNOWNX\r\n", "PROXY UNKNOWNX", V1_PROTO),
    BAD1("NUL", "PROXY TCP4 192.0.2.7\0 192.0.2.9 1234 80\r\n",
	"PROXY TCP4 192.0.2.7\0", V1_BYTE),
    BAD1("byte 0x80", T4 "1234 80\x80\r\n", T4 "1234 80\x80", V1_BYTE),
    BAD1("UTF-8 in UNKNOWN", "PROXY UNKNOWN caf\xc3\xa9\r\n",
	"PROXY UNKNOWN caf\xc3", V1_BYTE),
    /* The leftmost fault is the reason, whatever follows it. */
    BAD1("bad address, then a tab", "PROXY TCP4 192.0.2.07 \t\r\n",
	"PROXY TCP4 192.0.2.07 ", V1_SRC4),
    BAD1("long address, then NUL", "PROXY TCP4 1.2.3.4.5.6.7.8.9\0\r\n",
	"PROXY TCP4 1.2.3.4.5.6.7.8.", V1_SRC4),
    BAD1("bad port, then LF", T4 "08\n", T4 "08", V1_SPORT),
    BAD1("tab, then a bad address", "PROXY TCP4 1\t92.0.2.07 \r\n",
	"PROXY TCP4 1\t", V1_BYTE),
    BAD1("LF in UNKNOWN", "PROXY UNKNOWN a\nb\r\n", "PROXY UNKNOWN a\n", V1_LF),
    /* 116 bytes of valid fields: the 107-byte limit still holds. */
    BAD1N("TCP6 of 116 bytes",
	"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
	"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 65535 65535\r\n",
	107, V1_NOCRLF),
    BAD1N("UNKNOWN of 108 bytes",
	"PROXY UNKNOWN "
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	"xxxxxxxxxxxxxxxxxxxxxxxx\r\n",
	107, V1_NOCRLF),
    BAD1("PROXY without a space", "PROXY\r\n", "PROXY\r", NOT_PROXY),
    BAD1("PROXX", "PROXX TCP4\r\n", "PROXX", NOT_PROXY),
    BAD1("HTTP", "GET / HTTP/1.1\r\n", "G", NOT_PROXY),
    BAD1("SSH", "SSH-2.0-OpenSSH_9.2\r\n", "S", NOT_PROXY),
    BAD1("TLS", "\x16\x03\x01\x02\x00", "\x16", NOT_PROXY),
    BAD2("v2 version 1", SIG "11 11 000C" ADDR4, 13, V2_VERSION),
    BAD2("v2 version 3", SIG "31 11 000C" ADDR4, 13, V2_VERSION),
    BAD2("v2 version 0", SIG "01 11 000C" ADDR4, 13, V2_VERSION),
    BAD2("v2 command 2", SIG "22 11 000C" ADDR4, 13, V2_COMMAND),
    BAD2("v2 command 15", SIG "2F 11 000C" ADDR4, 13, V2_COMMAND),
    BAD2("v2 family 4", SIG "21 41 000C" ADDR4, 14, V2_FAMILY),
    BAD2("v2 family 15", SIG "21 F1 000C" ADDR4, 14, V2_FAMILY),
    BAD2("v2 family 4 transport 15", SIG "21 4F 000C" ADDR4, 14, V2_FAMILY),
    BAD2("v2 transport 3", SIG "21 13 000C" ADDR4, 14, V2_TRANSPORT),
    BAD2("v2 UDP4, length 0 (caddy-proxyprotocol #8)", SIG "21 12 0000", 14,
	V2_DGRAM),
    BAD2("v2 UDP6", SIG "21 22 0024", 14, V2_DGRAM),
    BAD2("v2 UNIX dgram", SIG "21 32 00D8", 14, V2_DGRAM),
    BAD2("v2 UNSPEC dgram", SIG "21 02 0000", 14, V2_DGRAM),
    BAD2("v2 INET without transport", SIG "21 10 000C" ADDR4, 14, V2_PAIR),
    BAD2("v2 UNSPEC stream", SIG "21 01 0000", 14, V2_PAIR),
    BAD2("v2 TCP4 length 4", SIG "21 11 0004 C0000207", 16, V2_SHORT),
    BAD2("v2 TCP4 length 0", SIG "21 11 0000", 16, V2_SHORT),
    BAD2("v2 TCP6 length 16", SIG "21 21 0010 20010DB8000000000000000000000001",
	16, V2_SHORT),
    BAD2("v2 TCP6 length 12", SIG "21 21 000C" ADDR4, 16, V2_SHORT),
    BAD2("v2 UNIX length 215", SIG "21 31 00D7", 16, V2_SHORT),
    BAD2("v2 length 65535", SIG "21 11 FFFF" ADDR4, 16, V2_LONG),
    BAD2("v2 length 4081", SIG "21 11 0FF1" ADDR4, 16, V2_LONG),
    BAD2("v2 LOCAL length 65535", SIG "20 00 FFFF", 16, V2_LONG),
    BAD2("v2 TLV truncated in its head", SIG "21 11 000E" ADDR4 "04 00", 30,
	V2_TRUNC),
    BAD2("v2 TLV of 1 byte", SIG "21 11 000D" ADDR4 "04", 29, V2_TRUNC),
    BAD2("v2 TLV past the end", SIG "21 11 0010" ADDR4 "04 0002 00", 32,
	V2_PAST),
    /* HAProxy's proxy_protocol_tlv_validation.vtc: what follows the
     * header is payload, never the rest of a TLV. */
    BAD2("v2 TLV past the end, payload after",
	SIG "21 11 0010" ADDR4 "04 0002 00 000000", 32, V2_PAST),
    BAD2("v2 CRC32C of 3 bytes", SIG "21 11 0012" ADDR4 "03 0003 7D5D61", 34,
	V2_CRCLEN),
    BAD2("v2 CRC32C of 5 bytes", SIG "21 11 0014" ADDR4 "03 0005 7D5D616000",
	36, V2_CRCLEN),
    BAD2("v2 CRC32C wrong", SIG "21 11 0013" ADDR4 "03 0004 7D5D6161", 35,
	V2_CRC),
    BAD2("v2 SSL of 4 bytes", SIG "21 11 0013" ADDR4 "20 0004 01000000", 35,
	V2_SSLSHORT),
    BAD2("v2 SSL sub-TLV past the SSL TLV",
	SIG "21 11 001A" ADDR4 "20 000B 01 00000000 21 0005 544C53", 42,
	V2_SSLSUB),
    BAD2("v2 SSL sub-TLV truncated in its head",
	SIG "21 11 0016" ADDR4 "20 0007 01 00000000 21 00", 38, V2_SSLSUB),
    BAD2("v2 AUTHORITY twice", SIG "21 11 0014" ADDR4 "02 0001 61 02 0001 62",
	36, V2_DUP),
    BAD2("v2 AUTHORITY with NUL", SIG "21 11 0013" ADDR4 "02 0004 61006263", 35,
	V2_AUTH),
    BAD2("v2 signature, then X", "0D0A0D0A58", 5, NOT_PROXY),
    BAD2("v2 signature, last byte wrong", "0D0A0D0A000D0A515549540D", 12,
	NOT_PROXY),
};

static size_t
bad_bytes(const struct bad_case *c, uint8_t *buf, size_t max)
{
	if (c->hex)
		return unhex(c->in, buf, max);
	if (c->in_len > max) {
		CHECK_FAILED("%s: test data too long", c->name);
		return 0;
	}
	memcpy(buf, c->in, c->in_len);
	return c->in_len;
}

static void
test_proxy_header_invalid(void)
{
	for (size_t i = 0; i < NCASES(bad_cases); i++) {
		const struct bad_case *c = &bad_cases[i];
		uint8_t buf[600];
		size_t n = bad_bytes(c, buf, sizeof buf);
		if (c->at < 1 || c->at > n) {
			CHECK_FAILED("%s: at %zu is not within the input (%zu)",
			    c->name, c->at, n);
			continue;
		}
		for (size_t k = 0; k <= n; k++) {
			struct proxy_header h;
			const char *why = NULL;
			ssize_t want = k < c->at ? 0 : -EINVAL;
			ssize_t r =
			    parse_exact(buf, k, PROXY_V1 | PROXY_V2, &h, &why);
			if (r != want)
				CHECK_FAILED(
				    "%s: %zu bytes: %zd (%s), want %zd",
				    c->name, k, r, why ? why : "no reason",
				    want);
			else if (r < 0 && (why == NULL || strcmp(why, c->why)))
				CHECK_FAILED("%s: why \"%s\", want \"%s\"",
				    c->name, why ? why : "(null)", c->why);
		}
	}
}

/* 200 bytes and no CRLF: refused at byte 107, never "need more" past it. */
static void
test_proxy_header_v1_no_crlf(void)
{
	uint8_t line[200];
	memset(line, 'x', sizeof line);
	memcpy(line, "PROXY UNKNOWN ", 14);
	for (size_t k = 0; k <= sizeof line; k++) {
		struct proxy_header h;
		const char *why = NULL;
		ssize_t r = parse_exact(line, k, PROXY_V1, &h, &why);
		if (k < PROXY_V1_MAX) {
			CHECK_EQ(r, 0);
			continue;
		}
		CHECK_EQ(r, -EINVAL);
		CHECK_STR(why, V1_NOCRLF);
	}
	CHECK_EQ(PROXY_V1_MAX, 107);
}

/* A v2 length of 65535 is refused at byte 16, without waiting for it. */
static void
test_proxy_header_v2_length_65535(void)
{
	uint8_t b[16];
	struct proxy_header h;
	const char *why = NULL;
	CHECK_EQ(unhex(SIG "21 11 FFFF", b, sizeof b), 16);
	CHECK_EQ(parse_exact(b, 15, PROXY_V2, &h, &why), 0);
	CHECK_EQ(parse_exact(b, 16, PROXY_V2, &h, &why), -EINVAL);
	CHECK_STR(why, V2_LONG);
}

/* 16 + 4080 = PROXY_HEADER_MAX is the longest header taken. */
static void
test_proxy_header_v2_longest(void)
{
	static uint8_t b[PROXY_HEADER_MAX + 1];
	struct proxy_header h;
	const char *why = NULL;
	CHECK_EQ(PROXY_HEADER_MAX, 4096);
	CHECK_EQ(unhex(SIG "21 11 0FF0" ADDR4 "04 0FE1", b, sizeof b), 31);
	CHECK_EQ(parse_exact(b, 4095, PROXY_V2, &h, &why), 0);
	CHECK_EQ(parse_exact(b, 4096, PROXY_V2, &h, &why), 4096);
	CHECK_EQ(parse_exact(b, 4097, PROXY_V2, &h, &why), 4096);
	CHECK_EQ(h.len, 4096);
	CHECK_EQ(h.local, false);
}

/* ---------------------------------------------------------------- */
/* TLVs                                                              */
/* ---------------------------------------------------------------- */

/* A v2 TCP4 header (ADDR4) followed by tlvs; returns its length. */
static size_t
v2_with(uint8_t *b, size_t max, const uint8_t *tlvs, size_t tlen)
{
	size_t n = unhex(SIG "21 11 0000" ADDR4, b, max);
	if (n + tlen > max) {
		CHECK_FAILED("v2_with: %zu TLV bytes do not fit", tlen);
		return 0;
	}
	memcpy(b + n, tlvs, tlen);
	b[14] = (uint8_t)((12 + tlen) >> 8);
	b[15] = (uint8_t)(12 + tlen);
	return n + tlen;
}

/* One TLV of type with len bytes of value fill (after head, if any). */
static size_t
tlv(uint8_t *t, uint8_t type, size_t len, const char *head, uint8_t fill)
{
	t[0] = type;
	t[1] = (uint8_t)(len >> 8);
	t[2] = (uint8_t)len;
	memset(t + 3, fill, len);
	if (head != NULL)
		memcpy(t + 3, head, strlen(head));
	return 3 + len;
}

static void
test_proxy_header_tlv_values(void)
{
	uint8_t t[400], b[600], uid[PROXY_UNIQUE_ID_MAX];
	size_t tl = tlv(t, 0x02, 11, "example.com", 0);
	tl += tlv(t + tl, 0x05, sizeof uid, NULL, 0);
	for (size_t i = 0; i < sizeof uid; i++)
		uid[i] = t[tl - sizeof uid + i] = (uint8_t)(i * 7);
	/* SSL: client 0x07, verify 0, VERSION "TLSv1.3", CN "a" */
	size_t ssl = tl;
	tl += tlv(t + tl, 0x20, 5 + 10 + 4, NULL, 0);
	t[ssl + 3] = 0x07;
	tlv(t + ssl + 8, 0x21, 7, "TLSv1.3", 0);
	tlv(t + ssl + 18, 0x22, 1, "a", 0);
	tl += tlv(t + tl, 0x04, 20, NULL, 0xff); /* NOOP */
	size_t n = v2_with(b, sizeof b, t, tl);
	struct proxy_header h;
	const char *why = NULL;
	ssize_t r = proxy_header_parse(b, n, PROXY_V2, &h, &why);
	REQUIRE(r == (ssize_t)n);
	/* Copied out: nothing may change when the buffer is reused. */
	memset(b, 0, sizeof b);
	CHECK_STR(h.authority, "example.com");
	CHECK_EQ(h.unique_id_len, sizeof uid);
	CHECK(memcmp(h.unique_id, uid, sizeof uid) == 0);
	CHECK_EQ(h.ssl.present, true);
	CHECK_EQ(h.ssl.client, 0x07);
	CHECK_EQ(h.ssl.verify, 0);
	CHECK_STR(h.ssl.version, "TLSv1.3");
}

static void
test_proxy_header_tlv_absent(void)
{
	uint8_t b[64];
	struct proxy_header h;
	memset(&h, 0x5a, sizeof h);
	size_t n = unhex(SIG "21 11 000C" ADDR4, b, sizeof b);
	REQUIRE(proxy_header_parse(b, n, PROXY_V2, &h, NULL) == 28);
	CHECK_STR(h.authority, "");
	CHECK_EQ(h.unique_id_len, 0);
	CHECK_EQ(h.ssl.present, false);
	CHECK_STR(h.ssl.version, "");
}

/* The bounds of the values that are copied: at the limit and past it. */
static void
test_proxy_header_tlv_limits(void)
{
	struct {
		uint8_t type;
		size_t len;
		const char *why; /* NULL: accepted */
	} cases[] = {
	    {0x02, 255, NULL},
	    {0x02, 256, V2_AUTH},
	    {0x02, 0, NULL},
	    {0x05, 128, NULL},
	    {0x05, 129, V2_UID},
	    {0x04, 500, NULL},
	    {0x03, 0, V2_CRCLEN},
	    {0x20, 5, NULL},
	    {0x20, 0, V2_SSLSHORT},
	};
	for (size_t i = 0; i < NCASES(cases); i++) {
		uint8_t t[600], b[700];
		size_t n = v2_with(b, sizeof b, t,
		    tlv(t, cases[i].type, cases[i].len, NULL, 'a'));
		struct proxy_header h;
		const char *why = NULL;
		ssize_t r = proxy_header_parse(b, n, PROXY_V2, &h, &why);
		if (cases[i].why == NULL && r != (ssize_t)n)
			CHECK_FAILED("type %#x len %zu: %zd (%s)",
			    cases[i].type, cases[i].len, r,
			    why ? why : "no reason");
		if (cases[i].why != NULL &&
		    (r != -EINVAL || why == NULL || strcmp(why, cases[i].why)))
			CHECK_FAILED("type %#x len %zu: %zd (%s), want \"%s\"",
			    cases[i].type, cases[i].len, r,
			    why ? why : "no reason", cases[i].why);
	}
}

static void
test_proxy_header_tlv_ssl_version(void)
{
	for (size_t len = 30; len <= 32; len++) {
		uint8_t t[100], b[200];
		size_t tl = tlv(t, 0x20, 5 + 3 + len, NULL, 0);
		tlv(t + 8, 0x21, len, NULL, 'v');
		size_t n = v2_with(b, sizeof b, t, tl);
		struct proxy_header h;
		const char *why = NULL;
		ssize_t r = proxy_header_parse(b, n, PROXY_V2, &h, &why);
		if (len < 32) {
			CHECK_EQ(r, (ssize_t)n);
			CHECK_EQ(strlen(h.ssl.version), len);
		} else {
			CHECK_EQ(r, -EINVAL);
			CHECK_STR(why, V2_SSLVER);
		}
	}
}

/* ---------------------------------------------------------------- */
/* Versions                                                          */
/* ---------------------------------------------------------------- */

static void
test_proxy_header_versions(void)
{
	const char *v1 = "PROXY TCP4 192.0.2.7 192.0.2.9 1234 80\r\n";
	uint8_t v2[28];
	struct proxy_header h;
	const char *why = NULL;
	unhex(SIG "21 11 000C" ADDR4, v2, sizeof v2);
	for (size_t k = 0; k < 6; k++)
		CHECK_EQ(
		    parse_exact((const uint8_t *)v1, k, PROXY_V2, &h, &why), 0);
	CHECK_EQ(parse_exact((const uint8_t *)v1, 6, PROXY_V2, &h, &why),
	    -EPROTONOSUPPORT);
	CHECK_STR(why, "a v1 header where only v2 is accepted");
	for (size_t k = 0; k < 12; k++)
		CHECK_EQ(parse_exact(v2, k, PROXY_V1, &h, &why), 0);
	CHECK_EQ(parse_exact(v2, 12, PROXY_V1, &h, &why), -EPROTONOSUPPORT);
	CHECK_EQ(parse_exact(v2, 28, PROXY_V1, &h, &why), -EPROTONOSUPPORT);
	CHECK_STR(why, "a v2 header where only v1 is accepted");
	CHECK_EQ(parse_exact(v2, 28, 0, &h, &why), -EINVAL);
	CHECK_STR(why, "no PROXY protocol version accepted");
	CHECK_EQ(parse_exact((const uint8_t *)"GET", 3, PROXY_V2, &h, &why),
	    -EINVAL);
	CHECK_STR(why, NOT_PROXY);
	CHECK_EQ(parse_exact(v2, 28, PROXY_V2, &h, &why), 28);
	CHECK(why == NULL);
}

/* The module leans on glibc's strict inet_pton: pin what it refuses. */
static void
test_proxy_header_inet_pton_strict(void)
{
	const char *bad[] = {"192.0.2.07", "010.0.0.1", "1.2.3", "0x7f.0.0.1",
	    "1.2.3.4.5", "256.0.0.1", " 1.2.3.4", "00.1.2.3"};
	uint8_t ip[16];
	for (size_t i = 0; i < NCASES(bad); i++) {
		if (inet_pton(AF_INET, bad[i], ip) != 0)
			CHECK_FAILED(
			    "inet_pton(AF_INET, \"%s\") accepts it", bad[i]);
	}
	CHECK_EQ(inet_pton(AF_INET, "0.0.0.0", ip), 1);
	CHECK_EQ(inet_pton(AF_INET6, "fe80::1%lo", ip), 0);
	CHECK_EQ(inet_pton(AF_INET6, "::ffff:1.02.3.4", ip), 0);
}

/* ---------------------------------------------------------------- */
/* Building                                                          */
/* ---------------------------------------------------------------- */

/* Build into a heap buffer of exactly size bytes (ASan sees overruns). */
static ssize_t
build_exact(int version, const struct pbx_addr *src, const struct pbx_addr *dst,
    uint8_t *out, size_t size)
{
	uint8_t *b = malloc(size > 0 ? size : 1);
	if (b == NULL)
		abort();
	ssize_t r = proxy_header_build(version, src, dst, b, size);
	if (r > 0)
		memcpy(out, b, (size_t)r);
	free(b);
	return r;
}

static void
check_built(const char *name, int version, const struct pbx_addr *src,
    const struct pbx_addr *dst, const char *want, bool hex)
{
	uint8_t w[128], got[128];
	size_t wn = hex ? unhex(want, w, sizeof w) : strlen(want);
	if (!hex)
		memcpy(w, want, wn);
	ssize_t r = build_exact(version, src, dst, got, wn);
	if (r != (ssize_t)wn || memcmp(got, w, wn) != 0) {
		CHECK_FAILED("%s: build = %zd, want %zu bytes%s", name, r, wn,
		    r == (ssize_t)wn ? " (different bytes)" : "");
		return;
	}
	CHECK_EQ(build_exact(version, src, dst, got, wn - 1), -ENOSPC);
}

static void
test_proxy_header_build_vectors(void)
{
	struct pbx_addr s4 = mkaddr(AF_INET, "127.0.0.1", 56324),
			d4 = mkaddr(AF_INET, "127.0.0.1", 443),
			s6 = mkaddr(AF_INET6, "2001:db8::1", 51000),
			d6 = mkaddr(AF_INET6, "2001:db8::2", 443), none = {0};
	check_built("v2 TCP4", 2, &s4, &d4,
	    "0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A 21 11 00 0C 7F 00 00 01 7F 00 00 01 DC 04 01 BB",
	    true);
	check_built("v2 TCP6", 2, &s6, &d6,
	    "0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A 21 21 00 24 20 01 0D B8 00 00 00 00 00 00 00 00 00 00 00 01 20 01 0D B8 00 00 00 00 00 00 00 00 00 00 00 02 C7 38 01 BB",
	    true);
	check_built("v2 LOCAL", 2, &none, &none,
	    "0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A 20 00 00 00", true);
	check_built("v2 LOCAL (NULL)", 2, NULL, &d4,
	    "0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A 20 00 00 00", true);
	check_built("v1 TCP6", 1, &s6, &d6,
	    "PROXY TCP6 2001:db8::1 2001:db8::2 51000 443\r\n", false);
	check_built("v1 UNKNOWN", 1, &s4, &none, "PROXY UNKNOWN\r\n", false);
	check_built("v1 TCP4", 1, &s4, &d4,
	    "PROXY TCP4 127.0.0.1 127.0.0.1 56324 443\r\n", false);
}

struct mixed_case {
	const char *name;
	int sfam;
	const char *sip;
	int dfam;
	const char *dip;
	const char *v1, *v2;
	int wfam; /* parsed back: the family and addresses of the header */
	const char *wsip, *wdip;
};

#define M4 "::ffff:192.0.2.7"
#define V2_4 SIG "21 11 000C C0000207 C0000209 0001 0002"

static const struct mixed_case mixed_cases[] = {
    {"v4 v4", AF_INET, "192.0.2.7", AF_INET, "192.0.2.9",
	"PROXY TCP4 192.0.2.7 192.0.2.9 1 2\r\n", V2_4, AF_INET, "192.0.2.7",
	"192.0.2.9"},
    {"mapped mapped", AF_INET6, M4, AF_INET6, "::ffff:192.0.2.9",
	"PROXY TCP4 192.0.2.7 192.0.2.9 1 2\r\n", V2_4, AF_INET, "192.0.2.7",
	"192.0.2.9"},
    {"mapped v4", AF_INET6, M4, AF_INET, "192.0.2.9",
	"PROXY TCP4 192.0.2.7 192.0.2.9 1 2\r\n", V2_4, AF_INET, "192.0.2.7",
	"192.0.2.9"},
    {"v4 mapped", AF_INET, "192.0.2.7", AF_INET6, "::ffff:192.0.2.9",
	"PROXY TCP4 192.0.2.7 192.0.2.9 1 2\r\n", V2_4, AF_INET, "192.0.2.7",
	"192.0.2.9"},
    {"v4 v6", AF_INET, "192.0.2.7", AF_INET6, "2001:db8::2",
	"PROXY TCP6 ::ffff:192.0.2.7 2001:db8::2 1 2\r\n",
	SIG "21 21 0024 00000000000000000000FFFFC0000207"
	    " 20010DB8000000000000000000000002 0001 0002",
	AF_INET6, M4, "2001:db8::2"},
    {"mapped v6", AF_INET6, M4, AF_INET6, "2001:db8::2",
	"PROXY TCP6 ::ffff:192.0.2.7 2001:db8::2 1 2\r\n",
	SIG "21 21 0024 00000000000000000000FFFFC0000207"
	    " 20010DB8000000000000000000000002 0001 0002",
	AF_INET6, M4, "2001:db8::2"},
    {"v6 v4", AF_INET6, "2001:db8::1", AF_INET, "192.0.2.9",
	"PROXY TCP6 2001:db8::1 ::ffff:192.0.2.9 1 2\r\n",
	SIG "21 21 0024 20010DB8000000000000000000000001"
	    " 00000000000000000000FFFFC0000209 0001 0002",
	AF_INET6, "2001:db8::1", "::ffff:192.0.2.9"},
    {"v6 v6", AF_INET6, "2001:db8::1", AF_INET6, "::1",
	"PROXY TCP6 2001:db8::1 ::1 1 2\r\n",
	SIG "21 21 0024 20010DB8000000000000000000000001"
	    " 00000000000000000000000000000001 0001 0002",
	AF_INET6, "2001:db8::1", "::1"},
};

static void
test_proxy_header_build_mixed(void)
{
	for (size_t i = 0; i < NCASES(mixed_cases); i++) {
		const struct mixed_case *c = &mixed_cases[i];
		struct pbx_addr s = mkaddr(c->sfam, c->sip, 1),
				d = mkaddr(c->dfam, c->dip, 2);
		check_built(c->name, 1, &s, &d, c->v1, false);
		check_built(c->name, 2, &s, &d, c->v2, true);
	}
}

/*
 * build -> parse gives the addresses back, in the family the header
 * carries: plain IPv4 for TCP4 (a mapped address is unmapped), IPv6 for
 * TCP6 (an IPv4 address beside IPv6 comes back mapped).
 */
static void
test_proxy_header_round_trip(void)
{
	for (size_t i = 0; i < NCASES(mixed_cases); i++) {
		const struct mixed_case *c = &mixed_cases[i];
		struct pbx_addr s = mkaddr(c->sfam, c->sip, 1),
				d = mkaddr(c->dfam, c->dip, 2);
		struct pbx_addr want_s = mkaddr(c->wfam, c->wsip, 1),
				want_d = mkaddr(c->wfam, c->wdip, 2);
		for (int v = 1; v <= 2; v++) {
			uint8_t b[PROXY_V1_MAX];
			struct proxy_header h;
			ssize_t n = proxy_header_build(v, &s, &d, b, sizeof b);
			REQUIRE(n > 0);
			ssize_t r = parse_exact(b, (size_t)n,
			    v == 1 ? PROXY_V1 : PROXY_V2, &h, NULL);
			CHECK_EQ(r, n);
			CHECK_EQ(h.version, v);
			CHECK_EQ(h.local, false);
			check_addr(c->name, "source", &h.source, &want_s);
			check_addr(c->name, "dest", &h.dest, &want_d);
		}
	}
}

static void
test_proxy_header_round_trip_local(void)
{
	struct pbx_addr none = {0}, d = mkaddr(AF_INET, "192.0.2.9", 2);
	for (int v = 1; v <= 2; v++) {
		uint8_t b[PROXY_V1_MAX];
		struct proxy_header h;
		ssize_t n = proxy_header_build(v, &d, &none, b, sizeof b);
		CHECK_EQ(n, v == 1 ? 15 : 16);
		REQUIRE(n > 0);
		CHECK_EQ(
		    parse_exact(b, (size_t)n, PROXY_V1 | PROXY_V2, &h, NULL),
		    n);
		CHECK_EQ(h.local, true);
		CHECK_EQ(h.source.len, 0);
		CHECK_EQ(h.dest.len, 0);
	}
}

static void
test_proxy_header_build_errors(void)
{
	struct pbx_addr s = mkaddr(AF_INET, "192.0.2.7", 1),
			unix_addr = {.u.sa.sa_family = AF_UNIX, .len = 2};
	uint8_t b[PROXY_V1_MAX];
	CHECK_EQ(
	    proxy_header_build(1, &s, &unix_addr, b, sizeof b), -EAFNOSUPPORT);
	CHECK_EQ(
	    proxy_header_build(2, &unix_addr, &s, b, sizeof b), -EAFNOSUPPORT);
	CHECK_EQ(proxy_header_build(0, &s, &s, b, sizeof b), -EINVAL);
	CHECK_EQ(proxy_header_build(3, &s, &s, b, sizeof b), -EINVAL);
	CHECK_EQ(proxy_header_build(1, &s, &s, b, 0), -ENOSPC);
	CHECK_EQ(proxy_header_build(2, NULL, NULL, b, 15), -ENOSPC);
	CHECK_EQ(proxy_header_build(1, NULL, NULL, b, 14), -ENOSPC);
}

CHECK_MAIN(TEST(test_proxy_header_valid),
    TEST(test_proxy_header_valid_prefixes), TEST(test_proxy_header_valid_split),
    TEST(test_proxy_header_invalid), TEST(test_proxy_header_v1_no_crlf),
    TEST(test_proxy_header_v2_length_65535), TEST(test_proxy_header_v2_longest),
    TEST(test_proxy_header_tlv_values), TEST(test_proxy_header_tlv_absent),
    TEST(test_proxy_header_tlv_limits), TEST(test_proxy_header_tlv_ssl_version),
    TEST(test_proxy_header_versions), TEST(test_proxy_header_inet_pton_strict),
    TEST(test_proxy_header_build_vectors), TEST(test_proxy_header_build_mixed),
    TEST(test_proxy_header_round_trip),
    TEST(test_proxy_header_round_trip_local),
    TEST(test_proxy_header_build_errors))
