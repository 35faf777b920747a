/* SPDX-License-Identifier: MIT */
/* Unit tests of the addr module: parse, resolve (numeric and /etc/hosts
 * only), format and the small accessors. */
#include "addr_util.h"
#include "check.h"
#include "pbx.h"

#include <arpa/inet.h>
#include <net/if.h>

/* An address built with libc, so format tests do not depend on parse. */
/* ---------------------------------------------------------------- */
/* pbx_hostport_parse                                                */
/* ---------------------------------------------------------------- */

struct hp_ok_case {
	const char *text;
	int flags;
	const char *host;
	uint16_t port;
	bool has_port;
	bool bracketed;
};

static const struct hp_ok_case hp_ok_cases[] = {
    {"127.0.0.1:80", 0, "127.0.0.1", 80, true, false},
    {"[::1]:80", 0, "::1", 80, true, true},
    {":80", 0, "", 80, true, false},
    {"[fe80::1%lo]:80", 0, "fe80::1%lo", 80, true, true},
    {"localhost:0", 0, "localhost", 0, true, false},
    {"example.com:65535", 0, "example.com", 65535, true, false},
    {"0.0.0.0:0", 0, "0.0.0.0", 0, true, false},
    {"[::]:8080", 0, "::", 8080, true, true},
    {"[2001:db8::1]:443", 0, "2001:db8::1", 443, true, true},
    {"my-host.example:1", 0, "my-host.example", 1, true, false},
    {"1.2.3.4:65535", 0, "1.2.3.4", 65535, true, false},
    {"127.0.0.2", PBX_PARSE_PORT_OPTIONAL, "127.0.0.2", 0, false, false},
    {"127.0.0.2:5000", PBX_PARSE_PORT_OPTIONAL, "127.0.0.2", 5000, true, false},
    {"[::1]", PBX_PARSE_PORT_OPTIONAL, "::1", 0, false, true},
    {"localhost", PBX_PARSE_PORT_OPTIONAL, "localhost", 0, false, false},
    /* Names that start with digits or hex are names (letters beyond 0x). */
    {"1password.com:443", 0, "1password.com", 443, true, false},
    {"3com:80", 0, "3com", 80, true, false},
    {"1e3:80", 0, "1e3", 80, true, false},
    {"0xg:80", 0, "0xg", 80, true, false},
    {"deadbeef:80", 0, "deadbeef", 80, true, false},
    {"0x7f.example:80", 0, "0x7f.example", 80, true, false},
    {"1.2.3.4a:80", 0, "1.2.3.4a", 80, true, false},
    {"00x1:80", 0, "00x1", 80, true, false},
    /* IPv6 forms, in brackets. */
    {"[::ffff:127.0.0.1]:80", 0, "::ffff:127.0.0.1", 80, true, true},
    {"[::1.2.3.4]:80", 0, "::1.2.3.4", 80, true, true},
    {"[1:2:3:4:5:6:7::]:80", 0, "1:2:3:4:5:6:7::", 80, true, true},
    {"[1:2:3:4:5:6:7:8]:80", 0, "1:2:3:4:5:6:7:8", 80, true, true},
    {"[::1%lo]", PBX_PARSE_PORT_OPTIONAL, "::1%lo", 0, false, true},
    /* Found by fuzz/addr_fuzz.c: a scope name on an address that is not
     * link-local, which glibc's getaddrinfo refuses; pbx takes a scope on
     * any IPv6 address, as documented, and never asks getaddrinfo. */
    {"[fe0::1%lo]:80", 0, "fe0::1%lo", 80, true, true},
};

static void
test_addr_hostport_parse_valid(void)
{
	for (size_t i = 0; i < sizeof hp_ok_cases / sizeof hp_ok_cases[0];
	     i++) {
		const struct hp_ok_case *c = &hp_ok_cases[i];
		struct pbx_hostport hp;
		struct pbx_parse_error err = {0};
		memset(&hp, 0xa5, sizeof hp);
		int r = pbx_hostport_parse(c->text, c->flags, &hp, &err);
		if (r != 0) {
			CHECK_FAILED("parse(\"%s\") = %d (%s %s)", c->text, r,
			    err.part ? err.part : "?",
			    err.reason ? err.reason : "?");
			continue;
		}
		if (strcmp(hp.host, c->host) != 0)
			CHECK_FAILED("parse(\"%s\"): host \"%s\" != \"%s\"",
			    c->text, hp.host, c->host);
		if (hp.port != c->port)
			CHECK_FAILED("parse(\"%s\"): port %u != %u", c->text,
			    (unsigned)hp.port, (unsigned)c->port);
		if (hp.has_port != c->has_port)
			CHECK_FAILED("parse(\"%s\"): has_port %d != %d",
			    c->text, hp.has_port, c->has_port);
		if (hp.bracketed != c->bracketed)
			CHECK_FAILED("parse(\"%s\"): bracketed %d != %d",
			    c->text, hp.bracketed, c->bracketed);
	}
}

/* The reason for every numeric host that is not a dotted quad. */
#define DOTTED_QUAD                                                            \
	"is not a dotted-quad IPv4 address (four decimals 0-255, no leading zeros)"

struct hp_bad_case {
	const char *text;
	int flags;
	const char *part;
	const char *reason;
	size_t offset;
	size_t length;
};

static const struct hp_bad_case hp_bad_cases[] = {
    {"1.2.3.4:65536", 0, "port", "is out of range 0-65535", 8, 5},
    {"1.2.3.4:-1", 0, "port", "is not a number", 8, 2},
    {"1.2.3.4:99999999999999999999", 0, "port", "is out of range 0-65535", 8,
	20},
    {"1.2.3.4:80x", 0, "port", "is not a number", 8, 3},
    {"1.2.3.4:0x50", 0, "port", "is not a number", 8, 4},
    {"1.2.3.4:1e3", 0, "port", "is not a number", 8, 3},
    {"1.2.3.4: 80", 0, "port", "is not a number", 8, 3},
    {"1.2.3.4:+80", 0, "port", "is not a number", 8, 3},
    {"1.2.3.4:", 0, "port", "is missing", 8, 0},
    {"1.2.3.4", 0, "port", "is missing", 7, 0},
    {"1.2.3.4:080", 0, "port", "has a leading zero", 8, 3},
    {"1.2.3.4:00", 0, "port", "has a leading zero", 8, 2},
    {"127.0.0.1:99999", 0, "port", "is out of range 0-65535", 10, 5},
    {"127.0.0.1:8x", 0, "port", "is not a number", 10, 2},
    {"127.0.0.1", 0, "port", "is missing", 9, 0},
    {"::1:80", 0, "host", "is IPv6 and must be in brackets", 0, 3},
    {"[::1:80", 0, "address", "has no closing bracket", 0, 7},
    {"[::1]", 0, "port", "is missing", 5, 0},
    {"[::1]x80", 0, "address", "has text after ']' that is not ':PORT'", 0, 8},
    {"256.1.1.1:80", 0, "host", DOTTED_QUAD, 0, 9},
    {"1.2.3:80", 0, "host", DOTTED_QUAD, 0, 5},
    {"1.2.3.4.5:80", 0, "host", DOTTED_QUAD, 0, 9},
    {"01.2.3.4:80", 0, "host", DOTTED_QUAD, 0, 8},
    {"[1::2::3]:80", 0, "host", "is not a valid IPv6 address", 1, 7},
    {"[1.2.3.4]:80", 0, "host", "is not a valid IPv6 address", 1, 7},
    {"a b:80", 0, "host", "is not a valid host name", 0, 3},
    {"", 0, "address", "is empty", 0, 0},
    {"127.0.0.2:x", PBX_PARSE_PORT_OPTIONAL, "port", "is not a number", 10, 1},
    {"127.0.0.2:65536", PBX_PARSE_PORT_OPTIONAL, "port",
	"is out of range 0-65535", 10, 5},
    /* Numbers in any other IPv4 form: inet_aton reads most of these as an
     * address (127.1, 0x7f000001 as 127.0.0.1), so they never reach it. */
    {"0x7f.1:80", 0, "host", DOTTED_QUAD, 0, 6},
    {"1:80", 0, "host", DOTTED_QUAD, 0, 1},
    {"127.1:80", 0, "host", DOTTED_QUAD, 0, 5},
    {"0177.0.0.1:80", 0, "host", DOTTED_QUAD, 0, 10},
    {"0x7f000001:9", 0, "host", DOTTED_QUAD, 0, 10},
    {"0x7f.0.0.1:0", 0, "host", DOTTED_QUAD, 0, 10},
    {"0X7F.0.0.1:0", 0, "host", DOTTED_QUAD, 0, 10},
    {"2130706433:80", 0, "host", DOTTED_QUAD, 0, 10},
    {"4294967295:80", 0, "host", DOTTED_QUAD, 0, 10},
    {"0xffffffff:80", 0, "host", DOTTED_QUAD, 0, 10},
    {"00:80", 0, "host", DOTTED_QUAD, 0, 2},
    {"0x:80", 0, "host", DOTTED_QUAD, 0, 2},
    {"1.2.3.04:80", 0, "host", DOTTED_QUAD, 0, 8},
    {"08.1.1.1:80", 0, "host", DOTTED_QUAD, 0, 8},
    {"1.2.3.4.:80", 0, "host", DOTTED_QUAD, 0, 8},
    {"1..2:80", 0, "host", DOTTED_QUAD, 0, 4},
    {".1:80", 0, "host", DOTTED_QUAD, 0, 2},
    {"1.2.3.0x4:80", 0, "host", DOTTED_QUAD, 0, 9},
    {"127.1", PBX_PARSE_PORT_OPTIONAL, "host", DOTTED_QUAD, 0, 5},
    {"0x7f000001", PBX_PARSE_PORT_OPTIONAL, "host", DOTTED_QUAD, 0, 10},
    /* IPv6: brackets always, RFC 4291 forms only, 128 bits exactly. */
    {"[::1]", 0, "port", "is missing", 5, 0},
    {"[::1]:", 0, "port", "is missing", 6, 0},
    {"[]:80", 0, "host", "is empty", 1, 0},
    {"[::1]]:80", 0, "address", "has text after ']' that is not ':PORT'", 0, 9},
    {"::ffff:127.0.0.1:80", 0, "host", "is IPv6 and must be in brackets", 0,
	16},
    {"[:::]:80", 0, "host", "is not a valid IPv6 address", 1, 3},
    {"[1:2:3:4:5:6:7:8:9]:80", 0, "host", "is not a valid IPv6 address", 1, 17},
    {"[1:2:3:4:5:6:7:8::]:80", 0, "host", "is not a valid IPv6 address", 1, 17},
    {"[::1:2:3:4:5:6:7:8]:80", 0, "host", "is not a valid IPv6 address", 1, 17},
    {"[1:2:3:4:5:6:7:1.2.3.4]:80", 0, "host", "is not a valid IPv6 address", 1,
	21},
    {"[12345::1]:80", 0, "host", "is not a valid IPv6 address", 1, 8},
    {"[::ffff:01.2.3.4]:80", 0, "host", "is not a valid IPv6 address", 1, 15},
    {"[::ffff:1.2.3]:80", 0, "host", "is not a valid IPv6 address", 1, 12},
    {"[::ffff:0x7f.0.0.1]:80", 0, "host", "is not a valid IPv6 address", 1, 17},
    {"[fe80::1%]:80", 0, "host", "is not a valid IPv6 address", 1, 8},
    {"[fe80::1%nosuchif0]:80", 0, "host", "is not a valid IPv6 address", 1, 17},
    {"[127.0.0.1]:80", 0, "host", "is not a valid IPv6 address", 1, 9},
    {"[localhost]:80", 0, "host", "is not a valid IPv6 address", 1, 9},
};

static void
test_addr_hostport_parse_invalid(void)
{
	for (size_t i = 0; i < sizeof hp_bad_cases / sizeof hp_bad_cases[0];
	     i++) {
		const struct hp_bad_case *c = &hp_bad_cases[i];
		struct pbx_hostport hp;
		struct pbx_parse_error err = {0};
		int r = pbx_hostport_parse(c->text, c->flags, &hp, &err);
		if (r != -EINVAL) {
			CHECK_FAILED(
			    "parse(\"%s\") = %d, want -EINVAL", c->text, r);
			continue;
		}
		const char *part = err.part ? err.part : "(null)";
		const char *reason = err.reason ? err.reason : "(null)";
		if (strcmp(part, c->part) != 0 ||
		    strcmp(reason, c->reason) != 0 || err.offset != c->offset ||
		    err.length != c->length)
			CHECK_FAILED("parse(\"%s\"): got {%s, %s, %zu, %zu}, "
				     "want {%s, %s, %zu, %zu}",
			    c->text, part, reason, err.offset, err.length,
			    c->part, c->reason, c->offset, c->length);
	}
}

/* The message the CLI builds from the error, for the spec's own examples. */
static void
test_addr_hostport_parse_error_message(void)
{
	static const struct {
		const char *text;
		const char *message;
	} cases[] = {
	    {"127.0.0.1:99999", "port '99999' is out of range 0-65535"},
	    {"127.0.0.1:8x", "port '8x' is not a number"},
	    {"127.0.0.1", "port is missing"},
	    {"::1:80", "host '::1' is IPv6 and must be in brackets"},
	    {"a b:80", "host 'a b' is not a valid host name"},
	    {"[::1:80", "address '[::1:80' has no closing bracket"},
	    {"[1::2::3]:80", "host '1::2::3' is not a valid IPv6 address"},
	    {"0x7f.0.0.1:0",
		"host '0x7f.0.0.1' is not a dotted-quad IPv4 address (four decimals 0-255, no leading zeros)"},
	    {"256.1.1.1:80",
		"host '256.1.1.1' is not a dotted-quad IPv4 address (four decimals 0-255, no leading zeros)"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct pbx_hostport hp;
		struct pbx_parse_error err = {0};
		const char *text = cases[i].text;
		if (pbx_hostport_parse(text, 0, &hp, &err) != -EINVAL ||
		    err.part == NULL || err.reason == NULL ||
		    err.offset + err.length > strlen(text)) {
			CHECK_FAILED(
			    "parse(\"%s\") did not fail cleanly", text);
			continue;
		}
		char msg[256];
		if (err.length == 0)
			snprintf(
			    msg, sizeof msg, "%s %s", err.part, err.reason);
		else
			snprintf(msg, sizeof msg, "%s '%.*s' %s", err.part,
			    (int)err.length, text + err.offset, err.reason);
		CHECK_STR(msg, cases[i].message);
	}
}

static void
test_addr_hostport_parse_null_err(void)
{
	struct pbx_hostport hp;
	CHECK_EQ(pbx_hostport_parse("1.2.3.4:x", 0, &hp, NULL), -EINVAL);
	CHECK_EQ(pbx_hostport_parse("", 0, &hp, NULL), -EINVAL);
	CHECK_EQ(pbx_hostport_parse("1.2.3.4:7", 0, &hp, NULL), 0);
	CHECK_EQ(hp.port, 7);
}

/* ---------------------------------------------------------------- */
/* pbx_addr_parse_ip                                                 */
/* ---------------------------------------------------------------- */

static void
test_addr_parse_ip_v4(void)
{
	struct pbx_addr a;
	memset(&a, 0xa5, sizeof a);
	REQUIRE(pbx_addr_parse_ip("127.0.0.1", 80, &a) == 0);
	CHECK_EQ(a.u.sa.sa_family, AF_INET);
	CHECK_EQ(a.len, sizeof(struct sockaddr_in));
	CHECK_EQ(ntohs(a.u.in4.sin_port), 80);
	CHECK_EQ(ntohl(a.u.in4.sin_addr.s_addr), 0x7f000001);

	REQUIRE(pbx_addr_parse_ip("255.255.255.255", 65535, &a) == 0);
	CHECK_EQ(ntohl(a.u.in4.sin_addr.s_addr), 0xffffffff);
	CHECK_EQ(ntohs(a.u.in4.sin_port), 65535);

	REQUIRE(pbx_addr_parse_ip("0.0.0.0", 0, &a) == 0);
	CHECK_EQ(a.u.sa.sa_family, AF_INET);
	CHECK_EQ(a.u.in4.sin_addr.s_addr, 0);
	CHECK_EQ(a.u.in4.sin_port, 0);

	REQUIRE(pbx_addr_parse_ip("10.20.30.40", 1, &a) == 0);
	CHECK_EQ(ntohl(a.u.in4.sin_addr.s_addr), 0x0a141e28);
}

static void
test_addr_parse_ip_v6(void)
{
	static const unsigned char loop6[16] = {[15] = 1};
	static const unsigned char doc6[16] = {
	    0x20, 0x01, 0x0d, 0xb8, [15] = 0x01};
	struct pbx_addr a;
	memset(&a, 0xa5, sizeof a);
	REQUIRE(pbx_addr_parse_ip("::1", 443, &a) == 0);
	CHECK_EQ(a.u.sa.sa_family, AF_INET6);
	CHECK_EQ(a.len, sizeof(struct sockaddr_in6));
	CHECK_EQ(ntohs(a.u.in6.sin6_port), 443);
	CHECK(memcmp(&a.u.in6.sin6_addr, loop6, 16) == 0);
	CHECK_EQ(a.u.in6.sin6_scope_id, 0);

	REQUIRE(pbx_addr_parse_ip("2001:db8::1", 1, &a) == 0);
	CHECK(memcmp(&a.u.in6.sin6_addr, doc6, 16) == 0);
	REQUIRE(pbx_addr_parse_ip(
		    "2001:0DB8:0000:0000:0000:0000:0000:0001", 1, &a) == 0);
	CHECK(memcmp(&a.u.in6.sin6_addr, doc6, 16) == 0);

	REQUIRE(pbx_addr_parse_ip("::", 0, &a) == 0);
	CHECK_EQ(a.u.sa.sa_family, AF_INET6);
	CHECK(pbx_addr_is_any(&a));

	CHECK_EQ(pbx_addr_parse_ip("1:2:3:4:5:6:7:8", 0, &a), 0);
	CHECK_EQ(pbx_addr_parse_ip("::ffff:10.0.0.1", 0, &a), 0);
	CHECK_EQ(pbx_addr_parse_ip("::1:80", 0, &a), 0); /* valid IPv6 */

	unsigned lo = if_nametoindex("lo");
	REQUIRE(lo != 0);
	REQUIRE(pbx_addr_parse_ip("fe80::1%lo", 80, &a) == 0);
	CHECK_EQ(a.u.sa.sa_family, AF_INET6);
	CHECK_EQ(a.u.in6.sin6_scope_id, lo);
	CHECK_EQ(ntohs(a.u.in6.sin6_port), 80);
}

static void
test_addr_parse_ip_invalid(void)
{
	static const char *const bad[] = {
	    "",
	    "1.2.3",
	    "1.2.3.4.5",
	    "256.0.0.0",
	    "1.2.3.256",
	    "01.2.3.4",
	    "1.2.3.04",
	    "0x7f.0.0.1",
	    "127.1",
	    " 1.2.3.4",
	    "1.2.3.4 ",
	    "1.2.3.4:80",
	    "-1.2.3.4",
	    "localhost",
	    "example.com",
	    "1::2::3",
	    "[::1]",
	    "::1 ",
	    "12345::1",
	    "1:2:3:4:5:6:7:8:9",
	    "fe80::1%",
	    "fe80::1%nosuchif0",
	    "g::1",
	    "1",
	    "0x7f.1",
	    "0177.0.0.1",
	    "0x7f000001",
	    "2130706433",
	    "1.2.3.4.",
	    "[::1]:80",
	    ":::",
	    "1:2:3:4:5:6:7:8::",
	    "::1:2:3:4:5:6:7:8",
	    "1:2:3:4:5:6:7:1.2.3.4",
	    "::ffff:1.2.3.4.5",
	    "::ffff:01.2.3.4",
	    "1.2.3.4%lo",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct pbx_addr a;
		int r = pbx_addr_parse_ip(bad[i], 80, &a);
		if (r != -EINVAL)
			CHECK_FAILED(
			    "parse_ip(\"%s\") = %d, want -EINVAL", bad[i], r);
	}
}

/* ---------------------------------------------------------------- */
/* pbx_addr_resolve (numeric and /etc/hosts only: no DNS queries)    */
/* ---------------------------------------------------------------- */

static struct pbx_hostport
mkhp(const char *host, uint16_t port)
{
	struct pbx_hostport hp;
	memset(&hp, 0, sizeof hp);
	snprintf(hp.host, sizeof hp.host, "%s", host);
	hp.port = port;
	hp.has_port = true;
	return hp;
}

static void
test_addr_resolve_numeric_v4(void)
{
	struct pbx_hostport hp = mkhp("127.0.0.1", 8080);
	struct pbx_addr out[4];
	REQUIRE(pbx_addr_resolve(&hp, 0, out, 4) == 1);
	CHECK_EQ(out[0].u.sa.sa_family, AF_INET);
	CHECK_EQ(ntohs(out[0].u.in4.sin_port), 8080);
	CHECK_EQ(ntohl(out[0].u.in4.sin_addr.s_addr), 0x7f000001);
	CHECK_EQ(out[0].len, sizeof(struct sockaddr_in));

	REQUIRE(pbx_addr_resolve(&hp, PBX_RESOLVE_NUMERIC, out, 4) == 1);
	CHECK_EQ(ntohl(out[0].u.in4.sin_addr.s_addr), 0x7f000001);
	REQUIRE(pbx_addr_resolve(&hp, PBX_RESOLVE_PASSIVE, out, 4) == 1);
	CHECK_EQ(ntohl(out[0].u.in4.sin_addr.s_addr), 0x7f000001);
}

static void
test_addr_resolve_numeric_v6(void)
{
	static const unsigned char loop6[16] = {[15] = 1};
	struct pbx_hostport hp = mkhp("::1", 443);
	hp.bracketed = true;
	struct pbx_addr out[4];
	REQUIRE(pbx_addr_resolve(&hp, 0, out, 4) == 1);
	CHECK_EQ(out[0].u.sa.sa_family, AF_INET6);
	CHECK_EQ(ntohs(out[0].u.in6.sin6_port), 443);
	CHECK(memcmp(&out[0].u.in6.sin6_addr, loop6, 16) == 0);
	CHECK_EQ(out[0].len, sizeof(struct sockaddr_in6));

	hp = mkhp("fe80::1%lo", 80);
	hp.bracketed = true;
	REQUIRE(pbx_addr_resolve(&hp, PBX_RESOLVE_NUMERIC, out, 4) == 1);
	CHECK_EQ(out[0].u.in6.sin6_scope_id, if_nametoindex("lo"));
}

static void
test_addr_resolve_passive_empty(void)
{
	struct pbx_hostport hp = mkhp("", 5000);
	struct pbx_addr out[4];
	REQUIRE(pbx_addr_resolve(&hp, PBX_RESOLVE_PASSIVE, out, 4) == 2);
	CHECK_EQ(out[0].u.sa.sa_family, AF_INET6);
	CHECK(pbx_addr_is_any(&out[0]));
	CHECK_EQ(ntohs(out[0].u.in6.sin6_port), 5000);
	CHECK_EQ(out[1].u.sa.sa_family, AF_INET);
	CHECK(pbx_addr_is_any(&out[1]));
	CHECK_EQ(ntohs(out[1].u.in4.sin_port), 5000);
	char buf[PBX_ADDR_STRLEN];
	CHECK(pbx_addr_format(&out[0], buf, sizeof buf) > 0);
	CHECK_STR(buf, "[::]:5000");
	CHECK(pbx_addr_format(&out[1], buf, sizeof buf) > 0);
	CHECK_STR(buf, "0.0.0.0:5000");

	/* Room for one: the dual-stack "::" comes first. */
	REQUIRE(pbx_addr_resolve(&hp, PBX_RESOLVE_PASSIVE, out, 1) == 1);
	CHECK_EQ(out[0].u.sa.sa_family, AF_INET6);
	CHECK(pbx_addr_is_any(&out[0]));
}

static void
test_addr_resolve_empty_not_passive(void)
{
	struct pbx_hostport hp = mkhp("", 80);
	struct pbx_addr out[4];
	CHECK_EQ(pbx_addr_resolve(&hp, 0, out, 4), -EINVAL);
	CHECK_EQ(pbx_addr_resolve(&hp, PBX_RESOLVE_NUMERIC, out, 4), -EINVAL);
}

static void
test_addr_resolve_numeric_refuses_names(void)
{
	struct pbx_hostport hp = mkhp("localhost", 80);
	struct pbx_addr out[4];
	int r = pbx_addr_resolve(&hp, PBX_RESOLVE_NUMERIC, out, 4);
	CHECK(r < 0);
	CHECK(pbx_strerror(r) != NULL);
}

/*
 * A host built by hand that the parser would refuse never reaches the
 * resolver: glibc's getaddrinfo reads 127.1 and 0x7f000001 as 127.0.0.1
 * (success), so -EINVAL shows that it was not asked.
 */
static void
test_addr_resolve_refuses_numbers(void)
{
	static const char *const bad[] = {"127.1", "0x7f000001", "0x7f.0.0.1",
	    "0177.0.0.1", "2130706433", "1", "00", "1.2.3.4.", "256.1.1.1",
	    "1.2.3.4 x", "1::2::3", "a b", ""};
	static const int flags[] = {0, PBX_RESOLVE_NUMERIC, PBX_RESOLVE_PASSIVE,
	    PBX_RESOLVE_NUMERIC | PBX_RESOLVE_PASSIVE};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		for (size_t f = 0; f < sizeof flags / sizeof flags[0]; f++) {
			if (bad[i][0] == '\0' &&
			    (flags[f] & PBX_RESOLVE_PASSIVE))
				continue; /* "" is every local address */
			struct pbx_hostport hp = mkhp(bad[i], 80);
			struct pbx_addr out[4];
			int r = pbx_addr_resolve(&hp, flags[f], out, 4);
			if (r != -EINVAL)
				CHECK_FAILED("resolve(\"%s\", %d) = %d, want "
					     "-EINVAL",
				    bad[i], flags[f], r);
		}
	}
	/* Brackets hold an IPv6 address, never a name. */
	struct pbx_hostport hp = mkhp("localhost", 80);
	hp.bracketed = true;
	struct pbx_addr out[4];
	CHECK_EQ(pbx_addr_resolve(&hp, 0, out, 4), -EINVAL);
	/* A name that starts with a digit is still a name. */
	hp = mkhp("3com", 80);
	CHECK_EQ(
	    pbx_addr_resolve(&hp, PBX_RESOLVE_NUMERIC, out, 4), PBX_EAI_NONAME);
}

/* "localhost" is in /etc/hosts: answered without a DNS query. */
static void
test_addr_resolve_localhost(void)
{
	struct pbx_hostport hp = mkhp("localhost", 4321);
	struct pbx_addr out[8];
	int n = pbx_addr_resolve(&hp, 0, out, 8);
	REQUIRE(n >= 1);
	REQUIRE(n <= 8);
	bool seen = false;
	for (int i = 0; i < n; i++) {
		CHECK_EQ(pbx_addr_port(&out[i]), 4321);
		if (out[i].u.sa.sa_family == AF_INET &&
		    ntohl(out[i].u.in4.sin_addr.s_addr) == 0x7f000001)
			seen = true;
	}
	CHECK(seen);
}

/* ---------------------------------------------------------------- */
/* pbx_addr_format, pbx_addr_format_ip                               */
/* ---------------------------------------------------------------- */

struct fmt_case {
	int family;
	const char *in; /* as inet_pton reads it */
	uint16_t port;
	const char *full; /* pbx_addr_format */
	const char *ip;   /* pbx_addr_format_ip */
};

static const struct fmt_case fmt_cases[] = {
    {AF_INET, "1.2.3.4", 80, "1.2.3.4:80", "1.2.3.4"},
    {AF_INET, "0.0.0.0", 0, "0.0.0.0:0", "0.0.0.0"},
    {AF_INET, "255.255.255.255", 65535, "255.255.255.255:65535",
	"255.255.255.255"},
    {AF_INET6, "::1", 80, "[::1]:80", "::1"},
    {AF_INET6, "::", 0, "[::]:0", "::"},
    {AF_INET6, "2001:db8::1", 443, "[2001:db8::1]:443", "2001:db8::1"},
    /* RFC 5952 4.1: leading zeros removed. */
    {AF_INET6, "2001:0db8:0000:0000:0000:0000:0000:0001", 1, "[2001:db8::1]:1",
	"2001:db8::1"},
    {AF_INET6, "2001:db8:0:0:0:0:2:1", 1, "[2001:db8::2:1]:1", "2001:db8::2:1"},
    /* 4.2.2: a single zero group is not compressed. */
    {AF_INET6, "2001:db8:0:1:1:1:1:1", 1, "[2001:db8:0:1:1:1:1:1]:1",
	"2001:db8:0:1:1:1:1:1"},
    /* 4.2.3: the longest run is compressed... */
    {AF_INET6, "2001:0:0:1:0:0:0:1", 1, "[2001:0:0:1::1]:1", "2001:0:0:1::1"},
    {AF_INET6, "2001:db8:0:0:0:1:0:0", 1, "[2001:db8::1:0:0]:1",
	"2001:db8::1:0:0"},
    /* ...and the first one on ties. */
    {AF_INET6, "2001:db8:0:0:1:0:0:1", 1, "[2001:db8::1:0:0:1]:1",
	"2001:db8::1:0:0:1"},
    /* 4.3: lowercase. */
    {AF_INET6, "2001:DB8:AAAA:BBBB:CCCC:DDDD:EEEE:FFFF", 1,
	"[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:1",
	"2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff"},
    {AF_INET6, "1:0:0:0:0:0:0:0", 1, "[1::]:1", "1::"},
    {AF_INET6, "0:0:0:0:0:0:0:1", 1, "[::1]:1", "::1"},
    {AF_INET6, "fe80:0:0:0:0:0:0:1", 1, "[fe80::1]:1", "fe80::1"},
    {AF_INET6, "1:2:3:4:5:6:7:8", 1, "[1:2:3:4:5:6:7:8]:1", "1:2:3:4:5:6:7:8"},
    {AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
	"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
	"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
    /* IPv4-mapped: written as the IPv4 address it carries. */
    {AF_INET6, "::ffff:10.0.0.1", 80, "10.0.0.1:80", "10.0.0.1"},
    {AF_INET6, "::ffff:127.0.0.1", 54321, "127.0.0.1:54321", "127.0.0.1"},
};

static void
test_addr_format_table(void)
{
	for (size_t i = 0; i < sizeof fmt_cases / sizeof fmt_cases[0]; i++) {
		const struct fmt_case *c = &fmt_cases[i];
		struct pbx_addr a = mkaddr(c->family, c->in, c->port);
		char buf[PBX_ADDR_STRLEN];
		memset(buf, 'x', sizeof buf);
		buf[sizeof buf - 1] = '\0';
		int n = pbx_addr_format(&a, buf, sizeof buf);
		if (n < 0 || strcmp(buf, c->full) != 0 ||
		    (size_t)n != strlen(c->full))
			CHECK_FAILED("format(%s port %u) = %d \"%.*s\", want "
				     "\"%s\"",
			    c->in, (unsigned)c->port, n, PBX_ADDR_STRLEN - 1,
			    n < 0 ? "" : buf, c->full);
		memset(buf, 'x', sizeof buf);
		buf[sizeof buf - 1] = '\0';
		n = pbx_addr_format_ip(&a, buf, sizeof buf);
		if (n < 0 || strcmp(buf, c->ip) != 0 ||
		    (size_t)n != strlen(c->ip))
			CHECK_FAILED("format_ip(%s) = %d \"%.*s\", want \"%s\"",
			    c->in, n, PBX_ADDR_STRLEN - 1, n < 0 ? "" : buf,
			    c->ip);
	}
}

static void
test_addr_format_scope(void)
{
	unsigned lo = if_nametoindex("lo");
	REQUIRE(lo != 0);
	struct pbx_addr a = mkaddr(AF_INET6, "fe80::1", 80);
	a.u.in6.sin6_scope_id = lo;
	char buf[PBX_ADDR_STRLEN];
	CHECK_EQ(pbx_addr_format(&a, buf, sizeof buf), 15);
	CHECK_STR(buf, "[fe80::1%lo]:80");
	CHECK_EQ(pbx_addr_format_ip(&a, buf, sizeof buf), 10);
	CHECK_STR(buf, "fe80::1%lo");
}

static void
test_addr_format_enospc(void)
{
	struct pbx_addr a = mkaddr(AF_INET, "1.2.3.4", 80); /* 10 chars */
	char buf[PBX_ADDR_STRLEN];
	CHECK_EQ(pbx_addr_format(&a, buf, 10), -ENOSPC);
	CHECK_EQ(pbx_addr_format(&a, buf, 5), -ENOSPC);
	CHECK_EQ(pbx_addr_format(&a, buf, 1), -ENOSPC);
	CHECK_EQ(pbx_addr_format(&a, buf, 0), -ENOSPC);
	CHECK_EQ(pbx_addr_format(&a, buf, 11), 10);
	CHECK_STR(buf, "1.2.3.4:80");
	/* format_ip: "1.2.3.4" is 7 chars. */
	CHECK_EQ(pbx_addr_format_ip(&a, buf, 7), -ENOSPC);
	CHECK_EQ(pbx_addr_format_ip(&a, buf, 8), 7);
	CHECK_STR(buf, "1.2.3.4");

	struct pbx_addr b = mkaddr(AF_INET6, "2001:db8::1", 443);
	/* "[2001:db8::1]:443" is 17 chars. */
	CHECK_EQ(pbx_addr_format(&b, buf, 17), -ENOSPC);
	CHECK_EQ(pbx_addr_format(&b, buf, 4), -ENOSPC);
	CHECK_EQ(pbx_addr_format(&b, buf, 18), 17);
	CHECK_STR(buf, "[2001:db8::1]:443");
	CHECK_EQ(pbx_addr_format_ip(&b, buf, 11), -ENOSPC);
	CHECK_EQ(pbx_addr_format_ip(&b, buf, 12), 11);
	CHECK_STR(buf, "2001:db8::1");
}

/* A heap buffer of the exact size: ASan sees any write past the end. */
static void
test_addr_format_no_overflow(void)
{
	struct pbx_addr a =
	    mkaddr(AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
	const char *want = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
	size_t len = strlen(want);
	for (size_t size = 1; size <= len + 1; size++) {
		char *buf = malloc(size);
		REQUIRE(buf != NULL);
		int n = pbx_addr_format(&a, buf, size);
		if (size <= len)
			CHECK_EQ(n, -ENOSPC);
		else
			CHECK_EQ(n, (int)len);
		free(buf);
	}
}

/* ---------------------------------------------------------------- */
/* Accessors                                                          */
/* ---------------------------------------------------------------- */

static void
test_addr_port_family(void)
{
	struct pbx_addr a4 = mkaddr(AF_INET, "1.2.3.4", 80);
	struct pbx_addr a6 = mkaddr(AF_INET6, "::1", 65535);
	CHECK_EQ(pbx_addr_family(&a4), AF_INET);
	CHECK_EQ(pbx_addr_family(&a6), AF_INET6);
	CHECK_EQ(pbx_addr_port(&a4), 80);
	CHECK_EQ(pbx_addr_port(&a6), 65535);

	pbx_addr_set_port(&a4, 54321);
	CHECK_EQ(a4.u.in4.sin_port, htons(54321));
	CHECK_EQ(pbx_addr_port(&a4), 54321);
	CHECK_EQ(ntohl(a4.u.in4.sin_addr.s_addr), 0x01020304);
	pbx_addr_set_port(&a6, 1);
	CHECK_EQ(a6.u.in6.sin6_port, htons(1));
	CHECK_EQ(pbx_addr_port(&a6), 1);
	pbx_addr_set_port(&a6, 0);
	CHECK_EQ(pbx_addr_port(&a6), 0);

	char buf[PBX_ADDR_STRLEN];
	CHECK(pbx_addr_format(&a4, buf, sizeof buf) > 0);
	CHECK_STR(buf, "1.2.3.4:54321");
}

static void
test_addr_is_any(void)
{
	struct pbx_addr a = mkaddr(AF_INET, "0.0.0.0", 1);
	CHECK(pbx_addr_is_any(&a));
	a = mkaddr(AF_INET6, "::", 1);
	CHECK(pbx_addr_is_any(&a));
	a = mkaddr(AF_INET, "127.0.0.1", 0);
	CHECK(!pbx_addr_is_any(&a));
	a = mkaddr(AF_INET, "0.0.0.1", 0);
	CHECK(!pbx_addr_is_any(&a));
	a = mkaddr(AF_INET6, "::1", 0);
	CHECK(!pbx_addr_is_any(&a));
	a = mkaddr(AF_INET6, "2001:db8::", 0);
	CHECK(!pbx_addr_is_any(&a));
}

/* ---------------------------------------------------------------- */
/* pbx_strerror                                                       */
/* ---------------------------------------------------------------- */

static void
test_addr_strerror(void)
{
	CHECK_STR(pbx_strerror(-ECONNREFUSED), "Connection refused");
	CHECK_STR(pbx_strerror(-ETIMEDOUT), "Connection timed out");
	CHECK_STR(pbx_strerror(-EADDRINUSE), "Address already in use");
	CHECK_STR(pbx_strerror(-ENOENT), "No such file or directory");
	static const int eai[] = {PBX_EAI_NONAME, PBX_EAI_AGAIN, PBX_EAI_FAIL,
	    PBX_EAI_FAMILY, PBX_EAI_OTHER};
	for (size_t i = 0; i < sizeof eai / sizeof eai[0]; i++) {
		const char *s = pbx_strerror(eai[i]);
		REQUIRE(s != NULL);
		CHECK(s[0] != '\0');
	}
	const char *u = pbx_strerror(-99999);
	CHECK(u != NULL);
	u = pbx_strerror(-4000);
	CHECK(u != NULL);
	u = pbx_strerror(12345);
	CHECK(u != NULL);
}

CHECK_MAIN(TEST(test_addr_hostport_parse_valid),
    TEST(test_addr_hostport_parse_invalid),
    TEST(test_addr_hostport_parse_error_message),
    TEST(test_addr_hostport_parse_null_err), TEST(test_addr_parse_ip_v4),
    TEST(test_addr_parse_ip_v6), TEST(test_addr_parse_ip_invalid),
    TEST(test_addr_resolve_numeric_v4), TEST(test_addr_resolve_numeric_v6),
    TEST(test_addr_resolve_passive_empty),
    TEST(test_addr_resolve_empty_not_passive),
    TEST(test_addr_resolve_numeric_refuses_names),
    TEST(test_addr_resolve_refuses_numbers), TEST(test_addr_resolve_localhost),
    TEST(test_addr_format_table), TEST(test_addr_format_scope),
    TEST(test_addr_format_enospc), TEST(test_addr_format_no_overflow),
    TEST(test_addr_port_family), TEST(test_addr_is_any),
    TEST(test_addr_strerror))
