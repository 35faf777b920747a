/* SPDX-License-Identifier: MIT */
/* rules_test.c: access rules: the format, its error messages, and
 * longest-prefix lookups of IPv4, IPv6 and IPv4-mapped callers. */
#include "../../src/serve/rules.h"
#include "addr_util.h"
#include "check.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>

static struct serve_rules *
parse_ok(const char *text, size_t len)
{
	char err[256] = "";
	struct serve_rules *r = NULL;
	int rc = serve_rules_parse("rules.txt", text, len, &r, err, sizeof err);
	if (rc != 0 || r == NULL)
		CHECK_FAILED("parse: %d: %s", rc, err);
	return r;
}

static struct serve_rules *
parse_str(const char *text)
{
	return parse_ok(text, strlen(text));
}

static const struct serve_rule *
match(const struct serve_rules *r, const char *ip)
{
	struct pbx_addr a =
	    mkaddr(strchr(ip, ':') != NULL ? AF_INET6 : AF_INET, ip, 4321);
	return serve_rules_match(r, &a);
}

/* The line of the rule that decides for ip, 0 when none does. */
static unsigned
line_of(const struct serve_rules *r, const char *ip)
{
	const struct serve_rule *rule = match(r, ip);
	return rule != NULL ? serve_rule_line(rule) : 0;
}

/* A lookup and what it must find: line 0 means no rule. */
struct want {
	const char *ip;
	unsigned line;
	bool allow;
};

static void
check_wants(const struct serve_rules *r, const struct want *w, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct serve_rule *rule = match(r, w[i].ip);
		unsigned line = rule != NULL ? serve_rule_line(rule) : 0;
		if (line != w[i].line)
			CHECK_FAILED("match(%s): line %u, expected %u", w[i].ip,
			    line, w[i].line);
		else if (rule != NULL && serve_rule_allows(rule) != w[i].allow)
			CHECK_FAILED("match(%s): allows %d, expected %d",
			    w[i].ip, serve_rule_allows(rule), w[i].allow);
	}
}

/* Stands for a set in *out, to see that a failed call sets NULL. */
static int sentinel;

#define NWANT(w) (sizeof(w) / sizeof((w)[0]))

/* ---------------------------------------------------------------- */
/* Bad texts: each refused with one exact line                       */
/* ---------------------------------------------------------------- */

#define BAD_ADDR "(expected dotted-quad IPv4 or IPv6)"

struct bad_case {
	const char *text;
	const char *err;
};

static const struct bad_case bad_cases[] = {
    /* Prefix lengths. */
    {"10.0.0.0/33 allow\n",
	"rules.txt:1:9: bad prefix length '/33' (expected 0 to 32)"},
    {"10.0.0.0/-1 allow\n",
	"rules.txt:1:9: bad prefix length '/-1' (expected 0 to 32)"},
    {"2001:db8::/129 allow\n",
	"rules.txt:1:11: bad prefix length '/129' (expected 0 to 128)"},
    {"1.2.3.4/ allow\n",
	"rules.txt:1:8: bad prefix length '/' (expected 0 to 32)"},
    {"10.0.0.0/08 allow",
	"rules.txt:1:9: bad prefix length '/08' (expected 0 to 32)"},
    {"10.0.0.0/+8 allow",
	"rules.txt:1:9: bad prefix length '/+8' (expected 0 to 32)"},
    {"10.0.0.0/8/8 allow",
	"rules.txt:1:9: bad prefix length '/8/8' (expected 0 to 32)"},
    {"::/1000 allow",
	"rules.txt:1:3: bad prefix length '/1000' (expected 0 to 128)"},
    {"::/99999999999999999999 allow",
	"rules.txt:1:3: bad prefix length '/99999999999999999999' (expected 0 "
	"to 128)"},
    /* Addresses: inet_pton's strict forms only. */
    {"hello world\n", "rules.txt:1:1: bad address 'hello' " BAD_ADDR},
    {"1.2.3 allow", "rules.txt:1:1: bad address '1.2.3' " BAD_ADDR},
    {"1.2.3/24 allow", "rules.txt:1:1: bad address '1.2.3' " BAD_ADDR},
    {"01.2.3.4 allow", "rules.txt:1:1: bad address '01.2.3.4' " BAD_ADDR},
    {"256.1.1.1 allow", "rules.txt:1:1: bad address '256.1.1.1' " BAD_ADDR},
    {"1.2.3.4.5 allow", "rules.txt:1:1: bad address '1.2.3.4.5' " BAD_ADDR},
    {"0x7f.0.0.1 allow", "rules.txt:1:1: bad address '0x7f.0.0.1' " BAD_ADDR},
    {"1 allow", "rules.txt:1:1: bad address '1' " BAD_ADDR},
    {"[::1] allow", "rules.txt:1:1: bad address '[::1]' " BAD_ADDR},
    {"fe80::1%lo allow", "rules.txt:1:1: bad address 'fe80::1%lo' " BAD_ADDR},
    {":::/8 allow", "rules.txt:1:1: bad address ':::' " BAD_ADDR},
    {"/8 allow", "rules.txt:1:1: bad address '/8' " BAD_ADDR},
    {"10.0.0.0#x allow", "rules.txt:1:1: bad address '10.0.0.0#x' " BAD_ADDR},
    {"1.2.3.4\xff allow", "rules.txt:1:1: bad address '1.2.3.4?' " BAD_ADDR},
    {"1111:2222:3333:4444:5555:6666:7777:8888:9999 allow",
	"rules.txt:1:1: bad address '1111:2222:3333:4444:5555:6666:7777:8888:..."
	"' " BAD_ADDR},
    /* Junk on a later line; lines count from 1, columns are bytes. */
    {"# c\n\n10.0.0.0/8 allow\n  10.1.0.0/16 permit\n",
	"rules.txt:4:15: expected allow or deny, not 'permit'"},
    {"10.0.0.0/8 allow\r\n10.0.0.0/33 deny\r\n",
	"rules.txt:2:9: bad prefix length '/33' (expected 0 to 32)"},
    {"10.0.0.0/8 permit",
	"rules.txt:1:12: expected allow or deny, not 'permit'"},
    {"10.0.0.0/8\tAllow",
	"rules.txt:1:12: expected allow or deny, not 'Allow'"},
    {"10.0.0.0/8 allow,X=1",
	"rules.txt:1:12: expected allow or deny, not 'allow,X=1'"},
    {"10.0.0.0/8", "rules.txt:1:11: expected allow or deny after '10.0.0.0/8'"},
    {"10.0.0.0/8   # none",
	"rules.txt:1:14: expected allow or deny after '10.0.0.0/8'"},
    /* Host bits, duplicates, IPv4-mapped rules. */
    {"10.0.0.1/8 allow",
	"rules.txt:1:1: host bits set in '10.0.0.1/8' (did you mean 10.0.0.0/8?)"},
    {"1.0.0.0/0 allow",
	"rules.txt:1:1: host bits set in '1.0.0.0/0' (did you mean 0.0.0.0/0?)"},
    {"2001:db8::1/32 deny",
	"rules.txt:1:1: host bits set in '2001:db8::1/32' (did you mean "
	"2001:db8::/32?)"},
    {"10.0.0.0/8 allow\n10.0.0.0/8 deny\n",
	"rules.txt:2:1: duplicate prefix '10.0.0.0/8' (first on line 1)"},
    {"1.2.3.4 allow\n\n 1.2.3.4/32 deny",
	"rules.txt:3:2: duplicate prefix '1.2.3.4/32' (first on line 1)"},
    {"::1 allow\n10.0.0.0/8 deny\n0::1/128 deny",
	"rules.txt:3:1: duplicate prefix '0::1/128' (first on line 1)"},
    {"0.0.0.0/0 allow\n::/0 deny\n0.0.0.0/0 deny",
	"rules.txt:3:1: duplicate prefix '0.0.0.0/0' (first on line 1)"},
    {"::ffff:10.0.0.0/104 allow",
	"rules.txt:1:1: IPv4-mapped prefix '::ffff:10.0.0.0/104' never matches "
	"(callers in ::ffff:0:0/96 are looked up as IPv4: write 10.0.0.0/8)"},
    {"::ffff:0:0/96 allow",
	"rules.txt:1:1: IPv4-mapped prefix '::ffff:0:0/96' never matches "
	"(callers in ::ffff:0:0/96 are looked up as IPv4: write 0.0.0.0/0)"},
    {"::ffff:1.2.3.4 deny",
	"rules.txt:1:1: IPv4-mapped prefix '::ffff:1.2.3.4' never matches "
	"(callers in ::ffff:0:0/96 are looked up as IPv4: write 1.2.3.4/32)"},
    /* Variables. */
    {"10.0.0.0/8 allow FOO",
	"rules.txt:1:18: bad variable 'FOO' (expected VAR=value)"},
    {"10.0.0.0/8 allow 1X=2",
	"rules.txt:1:18: bad variable '1X=2' (expected VAR=value)"},
    {"10.0.0.0/8 allow =x",
	"rules.txt:1:18: bad variable '=x' (expected VAR=value)"},
    {"10.0.0.0/8 allow A-B=1",
	"rules.txt:1:18: bad variable 'A-B=1' (expected VAR=value)"},
    {"10.0.0.0/8 allow X=1 \"Y=2\"",
	"rules.txt:1:22: bad variable '\"Y=2\"' (expected VAR=value)"},
    {"10.0.0.0/8 allow X=\"abc", "rules.txt:1:20: unterminated quote '\"abc'"},
    {"10.0.0.0/8 allow X=\"abc\\\"",
	"rules.txt:1:20: unterminated quote '\"abc\\\"'"},
    {"10.0.0.0/8 allow X=\"a\\nb\"",
	"rules.txt:1:22: bad escape '\\n' (only \\\" and \\\\ are escapes)"},
    {"10.0.0.0/8 allow X=\"a\\",
	"rules.txt:1:22: bad escape '\\' (only \\\" and \\\\ are escapes)"},
    {"10.0.0.0/8 allow X=\"a\"b",
	"rules.txt:1:23: expected a space after the closing quote, not 'b'"},
    {"10.0.0.0/8 allow X=\"a\"# c",
	"rules.txt:1:23: expected a space after the closing quote, not '#'"},
    {"10.0.0.0/8 allow X=a\"b",
	"rules.txt:1:20: bad value 'a\"b' (a bare value cannot hold '\"'; quote "
	"it)"},
    {"10.0.0.0/8 allow X=#a",
	"rules.txt:1:20: bad value '#a' (a value that starts with '#' must be "
	"quoted)"},
    {"10.0.0.0/8 allow X=1 Y=2 X=3",
	"rules.txt:1:26: variable 'X' set twice (first at column 18)"},
    {"10.0.0.0/8 allow X=\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	"rules.txt:1:20: unterminated quote "
	"'\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...'"},
    /* Control bytes, in rules and comments alike. */
    {"10.0.0.0/8 allow\x01",
	"rules.txt:1:17: control byte 0x01 (a rules file is text)"},
    {"10.0.0.0/8 allow # \x1b[31mred",
	"rules.txt:1:20: control byte 0x1b (a rules file is text)"},
    {"10.0.0.0/8\rallow",
	"rules.txt:1:11: control byte 0x0d (a rules file is text)"},
    {"10.0.0.0/8 allow\r\r\n",
	"rules.txt:1:17: control byte 0x0d (a rules file is text)"},
    {"10.0.0.0/8 allow X=\"\x7f\"",
	"rules.txt:1:21: control byte 0x7f (a rules file is text)"},
};

static void
test_rules_bad_inputs(void)
{
	for (size_t i = 0; i < NWANT(bad_cases); i++) {
		const struct bad_case *c = &bad_cases[i];
		char err[256];
		memset(err, 'x', sizeof err);
		struct serve_rules *r = (struct serve_rules *)&sentinel;
		int rc = serve_rules_parse(
		    "rules.txt", c->text, strlen(c->text), &r, err, sizeof err);
		if (rc != -EINVAL || r != NULL)
			CHECK_FAILED("parse(\"%s\") = %d, rules %p", c->text,
			    rc, (void *)r);
		CHECK_STR(err, c->err);
		serve_rules_free(r);
	}
}

static void
test_rules_nul_byte(void)
{
	static const char text[] = "10.0.0.0/8 allow\n10.1.0.0/16 d\0ny\n";
	char err[128];
	struct serve_rules *r = NULL;
	CHECK_EQ(serve_rules_parse(
		     "rules.txt", text, sizeof text - 1, &r, err, sizeof err),
	    -EINVAL);
	CHECK(r == NULL);
	CHECK_STR(
	    err, "rules.txt:2:14: control byte 0x00 (a rules file is text)");
}

/* The name is shown as given, but never with a byte a terminal obeys. */
static void
test_rules_error_names_the_file(void)
{
	char err[128];
	struct serve_rules *r = NULL;
	CHECK_EQ(serve_rules_parse(
		     "/etc/pbx/a\x1b]0;b", "x", 1, &r, err, sizeof err),
	    -EINVAL);
	CHECK_STR(err, "/etc/pbx/a?]0;b:1:1: bad address 'x' " BAD_ADDR);
}

/* A small buffer gets a cut, terminated line; none at all is fine. */
static void
test_rules_error_buffer_small(void)
{
	char err[16];
	memset(err, 'x', sizeof err);
	struct serve_rules *r = NULL;
	const char *text = "10.0.0.0/33 allow";
	CHECK_EQ(serve_rules_parse(
		     "rules.txt", text, strlen(text), &r, err, sizeof err),
	    -EINVAL);
	CHECK_STR(err, "rules.txt:1:9: ");
	CHECK_EQ(serve_rules_parse(
		     "a-very-long-file-name", text, strlen(text), &r, err, 8),
	    -EINVAL);
	CHECK_STR(err, "a-very-");
	CHECK_EQ(
	    serve_rules_parse("rules.txt", text, strlen(text), &r, NULL, 0),
	    -EINVAL);
	CHECK(r == NULL);
}

/* ---------------------------------------------------------------- */
/* Texts with no rules, line endings, long lines, many rules         */
/* ---------------------------------------------------------------- */

static void
check_no_rule_matches(const struct serve_rules *r)
{
	static const char *const ips[] = {"0.0.0.0", "10.1.2.3",
	    "255.255.255.255", "::", "::1", "2001:db8::1", "::ffff:10.1.2.3",
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"};
	for (size_t i = 0; i < NWANT(ips); i++)
		if (match(r, ips[i]) != NULL)
			CHECK_FAILED("match(%s) found a rule", ips[i]);
}

static void
test_rules_empty(void)
{
	struct serve_rules *r = parse_ok("", 0);
	REQUIRE(r != NULL);
	CHECK_EQ(serve_rules_count(r), 0);
	check_no_rule_matches(r);
	serve_rules_free(r);
	r = parse_ok(NULL, 0);
	REQUIRE(r != NULL);
	CHECK_EQ(serve_rules_count(r), 0);
	serve_rules_free(r);
}

static void
test_rules_comments_only(void)
{
	struct serve_rules *r = parse_str("# rules for the lab\n"
					  "\n"
					  "   \t \n"
					  "\t# indented 10.0.0.0/8 allow\n"
					  "#10.0.0.0/8 allow\n"
					  "# \"unbalanced quote\n"
					  "# caf\xc3\xa9 UTF-8 is fine here\n"
					  "#");
	REQUIRE(r != NULL);
	CHECK_EQ(serve_rules_count(r), 0);
	check_no_rule_matches(r);
	serve_rules_free(r);
}

static void
test_rules_no_trailing_newline(void)
{
	struct serve_rules *r = parse_str("10.0.0.0/8 deny\n10.1.0.0/16 allow");
	REQUIRE(r != NULL);
	CHECK_EQ(serve_rules_count(r), 2);
	static const struct want w[] = {
	    {"10.1.2.3", 2, true}, {"10.2.0.0", 1, false}, {"11.0.0.0", 0, 0}};
	check_wants(r, w, NWANT(w));
	serve_rules_free(r);
	/* The last line's variable ends at the end of the text. */
	r = parse_str("10.0.0.0/8 allow X=1");
	REQUIRE(r != NULL);
	const struct serve_rule *rule = match(r, "10.0.0.1");
	REQUIRE(rule != NULL);
	CHECK_EQ(serve_rule_nvars(rule), 1);
	CHECK_STR(serve_rule_var(rule, 0), "X=1");
	serve_rules_free(r);
}

static void
test_rules_crlf(void)
{
	struct serve_rules *r = parse_str("# comment\r\n"
					  "\r\n"
					  "10.0.0.0/8 deny\r\n"
					  "10.1.0.0/16 allow X=1\r\n"
					  "10.2.0.0/16 allow Y=\"a b\"\r\n"
					  "10.3.0.0/16 allow Z=\r");
	REQUIRE(r != NULL);
	CHECK_EQ(serve_rules_count(r), 4);
	static const struct want w[] = {{"10.9.9.9", 3, false},
	    {"10.1.0.1", 4, true}, {"10.2.0.1", 5, true},
	    {"10.3.0.1", 6, true}};
	check_wants(r, w, NWANT(w));
	/* The CR is part of the line ending, never of a value. */
	CHECK_STR(serve_rule_var(match(r, "10.1.0.1"), 0), "X=1");
	CHECK_STR(serve_rule_var(match(r, "10.2.0.1"), 0), "Y=a b");
	CHECK_STR(serve_rule_var(match(r, "10.3.0.1"), 0), "Z=");
	serve_rules_free(r);
}

/* "10.0.0.0/8 allow V=xxx...": a line of exactly len bytes. */
static char *
long_line(size_t len, const char *end)
{
	char *s = malloc(len + strlen(end) + 1);
	if (s == NULL)
		return NULL;
	memset(s, 'x', len);
	memcpy(s, "10.0.0.0/8 allow V=", 19);
	memcpy(s + len, end, strlen(end) + 1);
	return s;
}

static void
test_rules_long_line(void)
{
	char err[256];
	struct serve_rules *r = NULL;
	/* 64 KiB is the most a line may hold, newline or CR not counted. */
	char *s = long_line(65536, "\r\n");
	REQUIRE(s != NULL);
	CHECK_EQ(
	    serve_rules_parse("rules.txt", s, strlen(s), &r, err, sizeof err),
	    0);
	REQUIRE(r != NULL);
	const struct serve_rule *rule = match(r, "10.0.0.1");
	REQUIRE(rule != NULL);
	CHECK_EQ(strlen(serve_rule_var(rule, 0)), 65536 - 17);
	serve_rules_free(r);
	free(s);

	s = long_line(65537, "\n");
	REQUIRE(s != NULL);
	CHECK_EQ(
	    serve_rules_parse("rules.txt", s, strlen(s), &r, err, sizeof err),
	    -EINVAL);
	CHECK_STR(err, "rules.txt:1:1: line too long (more than 65536 bytes) "
		       "'10.0.0.0/8 allow V=xxxxxxxxxxxxxxxxxxxxx...'");
	free(s);

	s = long_line(1024 * 1024, "");
	REQUIRE(s != NULL);
	CHECK_EQ(
	    serve_rules_parse("rules.txt", s, strlen(s), &r, err, sizeof err),
	    -EINVAL);
	CHECK(r == NULL);
	CHECK_STR(err, "rules.txt:1:1: line too long (more than 65536 bytes) "
		       "'10.0.0.0/8 allow V=xxxxxxxxxxxxxxxxxxxxx...'");
	free(s);
}

/* Text grown line by line, for the big sets. */
struct text {
	char *s;
	size_t len, cap;
};

static void
text_add(struct text *t, const char *line)
{
	size_t n = strlen(line);
	if (t->len + n + 1 > t->cap) {
		t->cap = (t->len + n + 1) * 2;
		t->s = realloc(t->s, t->cap);
		if (t->s == NULL)
			abort();
	}
	memcpy(t->s + t->len, line, n + 1);
	t->len += n;
}

static void
test_rules_100000_ipv4(void)
{
	struct text t = {0};
	char line[64];
	/* Line i+1 is 10.A.B.C/32 where ABC is i in base 256. */
	for (unsigned i = 0; i < 100000; i++) {
		snprintf(line, sizeof line, "10.%u.%u.%u %s N=%u\n", i >> 16,
		    (i >> 8) & 255, i & 255, i % 2 == 0 ? "allow" : "deny", i);
		text_add(&t, line);
	}
	text_add(&t, "10.0.0.0/8 deny\n");
	struct serve_rules *r = parse_ok(t.s, t.len);
	free(t.s);
	REQUIRE(r != NULL);
	CHECK_EQ(serve_rules_count(r), 100001);
	static const struct want w[] = {{"10.0.0.0", 1, true},
	    {"10.0.0.1", 2, false}, {"10.0.1.0", 257, true},
	    {"10.1.0.0", 65537, true}, {"10.1.134.159", 100000, false},
	    {"10.1.134.160", 100001, false}, {"10.255.255.255", 100001, false},
	    {"11.0.0.0", 0, false}, {"9.255.255.255", 0, false}};
	check_wants(r, w, NWANT(w));
	CHECK_STR(serve_rule_var(match(r, "10.1.134.159"), 0), "N=99999");
	CHECK_STR(serve_rule_var(match(r, "10.0.1.0"), 0), "N=256");
	serve_rules_free(r);
}

static void
test_rules_100000_ipv6(void)
{
	struct text t = {0};
	char line[64];
	for (unsigned i = 0; i < 100000; i++) {
		snprintf(line, sizeof line, "2001:db8:%x:%x::/64 allow\n",
		    i >> 16, i & 0xffff);
		text_add(&t, line);
	}
	text_add(&t, "2001:db8::/32 deny\n");
	struct serve_rules *r = parse_ok(t.s, t.len);
	free(t.s);
	REQUIRE(r != NULL);
	CHECK_EQ(serve_rules_count(r), 100001);
	static const struct want w[] = {{"2001:db8::1", 1, true},
	    {"2001:db8:0:ffff:1:2:3:4", 65536, true},
	    {"2001:db8:1:869f::", 100000, true},
	    {"2001:db8:1:86a0::", 100001, false},
	    {"2001:db8:ffff::", 100001, false}, {"2001:db9::", 0, false}};
	check_wants(r, w, NWANT(w));
	serve_rules_free(r);
}

/* ---------------------------------------------------------------- */
/* Longest prefix                                                    */
/* ---------------------------------------------------------------- */

static const char nested_v4[] = "10.0.0.0/8 allow L=8\n"
				"10.1.0.0/16 deny L=16\n"
				"10.1.2.0/24 allow L=24\n"
				"10.1.2.3/32 deny L=32\n";

static const struct want nested_v4_wants[] = {
    {"10.1.2.3", 4, false}, {"10.1.2.4", 3, true}, {"10.1.2.2", 3, true},
    {"10.1.2.255", 3, true}, {"10.1.3.3", 2, false}, {"10.1.255.3", 2, false},
    {"10.2.2.3", 1, true}, {"10.0.0.0", 1, true}, {"10.255.255.255", 1, true},
    {"11.1.2.3", 0, false}, {"9.1.2.3", 0, false},
    {"138.1.2.3", 0, false}, /* 10 with the top bit set */
    {"::ffff:10.1.2.3", 4, false}, {"::ffff:10.1.2.4", 3, true},
    {"::ffff:10.1.3.3", 2, false}, {"::ffff:10.2.0.0", 1, true},
    {"::ffff:11.0.0.0", 0, false},
    {"::a01:203", 0, false}, /* 10.1.2.3 in the last 32 bits, not mapped */
};

static void
test_rules_longest_prefix_v4(void)
{
	struct serve_rules *r = parse_str(nested_v4);
	REQUIRE(r != NULL);
	check_wants(r, nested_v4_wants, NWANT(nested_v4_wants));
	CHECK_STR(serve_rule_var(match(r, "10.1.2.3"), 0), "L=32");
	CHECK_STR(serve_rule_var(match(r, "10.1.2.9"), 0), "L=24");
	CHECK_STR(serve_rule_var(match(r, "10.1.9.9"), 0), "L=16");
	CHECK_STR(serve_rule_var(match(r, "10.9.9.9"), 0), "L=8");
	serve_rules_free(r);
}

/* The same rules, longest first: the trie splits instead of extending. */
static void
test_rules_longest_prefix_any_order(void)
{
	struct serve_rules *r = parse_str("\n\n\n"
					  "10.1.2.3/32 deny\n"
					  "10.1.2.0/24 allow\n"
					  "10.1.0.0/16 deny\n"
					  "10.0.0.0/8 allow\n");
	REQUIRE(r != NULL);
	static const struct want w[] = {{"10.1.2.3", 4, false},
	    {"10.1.2.4", 5, true}, {"10.1.3.3", 6, false},
	    {"10.2.2.3", 7, true}, {"11.1.2.3", 0, false}};
	check_wants(r, w, NWANT(w));
	serve_rules_free(r);
	/* Siblings that part at different bits, and a /31 pair. */
	r = parse_str("192.168.0.0/24 allow\n"
		      "192.168.128.0/17 deny\n"
		      "192.168.1.0/24 deny\n"
		      "192.168.0.4/31 deny\n"
		      "192.168.0.6/31 allow\n"
		      "192.168.0.5 allow\n");
	REQUIRE(r != NULL);
	static const struct want w2[] = {{"192.168.0.3", 1, true},
	    {"192.168.0.4", 4, false}, {"192.168.0.5", 6, true},
	    {"192.168.0.6", 5, true}, {"192.168.0.7", 5, true},
	    {"192.168.0.8", 1, true}, {"192.168.1.4", 3, false},
	    {"192.168.2.4", 0, false}, {"192.168.128.1", 2, false},
	    {"192.168.255.255", 2, false}, {"192.169.0.0", 0, false}};
	check_wants(r, w2, NWANT(w2));
	serve_rules_free(r);
}

static void
test_rules_longest_prefix_v6(void)
{
	struct serve_rules *r = parse_str("2001:db8::/32 allow\n"
					  "2001:db8:1::/48 deny\n"
					  "2001:db8:1:2::/64 allow\n"
					  "2001:db8:1:2::8/125 deny\n"
					  "2001:db8:1:2::9 allow\n"
					  "fe80::/10 deny\n"
					  "::1 allow\n");
	REQUIRE(r != NULL);
	CHECK_EQ(serve_rules_count(r), 7);
	static const struct want w[] = {{"2001:db8::1", 1, true},
	    {"2001:db8:ffff::", 1, true}, {"2001:db8:1::", 2, false},
	    {"2001:db8:1:3::", 2, false}, {"2001:db8:1:2::1", 3, true},
	    {"2001:db8:1:2:ffff::", 3, true}, {"2001:db8:1:2::8", 4, false},
	    {"2001:db8:1:2::f", 4, false}, {"2001:db8:1:2::10", 3, true},
	    {"2001:db8:1:2::9", 5, true}, {"2001:db9::", 0, false},
	    {"fe80::1", 6, false}, {"febf:ffff::", 6, false},
	    {"fec0::", 0, false}, {"::1", 7, true}, {"::2", 0, false},
	    {"::", 0, false}, {"1.2.3.4", 0, false}};
	check_wants(r, w, NWANT(w));
	serve_rules_free(r);
}

/* Each family's /0 covers its own callers only, mapped ones as IPv4. */
static void
test_rules_catch_all_per_family(void)
{
	struct serve_rules *r = parse_str("0.0.0.0/0 allow\n");
	REQUIRE(r != NULL);
	static const struct want w4[] = {{"0.0.0.0", 1, true},
	    {"255.255.255.255", 1, true}, {"::ffff:1.2.3.4", 1, true},
	    {"::", 0, false}, {"::1", 0, false}, {"2001:db8::1", 0, false}};
	check_wants(r, w4, NWANT(w4));
	serve_rules_free(r);

	r = parse_str("::/0 deny\n");
	REQUIRE(r != NULL);
	static const struct want w6[] = {{"::", 1, false},
	    {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1, false},
	    {"::ffff:0:1", 0, false}, /* mapped 0.0.0.1: an IPv4 caller */
	    {"::ffff:1.2.3.4", 0, false}, {"1.2.3.4", 0, false}};
	check_wants(r, w6, NWANT(w6));
	serve_rules_free(r);

	r = parse_str("::/0 deny\n0.0.0.0/0 allow\n127.0.0.0/8 deny\n");
	REQUIRE(r != NULL);
	static const struct want w46[] = {{"::1", 1, false},
	    {"1.2.3.4", 2, true}, {"::ffff:1.2.3.4", 2, true},
	    {"127.0.0.1", 3, false}, {"::ffff:127.0.0.1", 3, false},
	    {"::fffe:127.0.0.1", 1, false}, {"::1:ffff:127.0.0.1", 1, false}};
	check_wants(r, w46, NWANT(w46));
	serve_rules_free(r);
}

/* No address, another family, no rules: no rule, so the caller denies. */
static void
test_rules_match_without_address(void)
{
	struct serve_rules *r = parse_str("0.0.0.0/0 allow\n::/0 allow\n");
	REQUIRE(r != NULL);
	struct pbx_addr a = mkaddr(AF_INET, "1.2.3.4", 80);
	CHECK(serve_rules_match(r, &a) != NULL);
	CHECK(serve_rules_match(NULL, &a) == NULL);
	a.len = 0;
	CHECK(serve_rules_match(r, &a) == NULL);
	a = mkaddr(AF_INET6, "::1", 80);
	a.len = sizeof a.u.in4; /* too short for an IPv6 address */
	CHECK(serve_rules_match(r, &a) == NULL);
	memset(&a, 0, sizeof a);
	a.u.sa.sa_family = AF_UNIX;
	a.len = sizeof a.u;
	CHECK(serve_rules_match(r, &a) == NULL);
	CHECK(serve_rules_match(r, NULL) == NULL);
	CHECK_EQ(serve_rules_count(NULL), 0);
	serve_rules_free(r);
	serve_rules_free(NULL);
}

/* ---------------------------------------------------------------- */
/* Variables                                                         */
/* ---------------------------------------------------------------- */

static void
check_vars(const struct serve_rule *rule, const char *const *want, size_t n)
{
	if (rule == NULL) {
		CHECK_FAILED("no rule");
		return;
	}
	CHECK_EQ(serve_rule_nvars(rule), n);
	for (size_t i = 0; i < n && i < serve_rule_nvars(rule); i++)
		CHECK_STR(serve_rule_var(rule, i), want[i]);
	CHECK(serve_rule_var(rule, serve_rule_nvars(rule)) == NULL);
}

static void
test_rules_variables(void)
{
	struct serve_rules *r = parse_str(
	    "10.0.0.0/8 allow A=1 B=two C= D=\"\" E=\"with space\"\n"
	    "10.1.0.0/16\tallow\tQ=\"say \\\"hi\\\"\"\tS=\"a\\\\b\" # note\n"
	    "10.2.0.0/16 deny H=\"# not a comment\" P=a#b U=caf\xc3\xa9 "
	    "R=\\n T=\"a\tb\"  # comment X=1\n"
	    "10.3.0.0/16 allow _x_1=\"\" TCPREMOTEINFO=x=y#\n"
	    "10.4.0.0/16 allow\n");
	REQUIRE(r != NULL);
	static const char *const v1[] = {
	    "A=1", "B=two", "C=", "D=", "E=with space"};
	check_vars(match(r, "10.0.0.1"), v1, 5);
	static const char *const v2[] = {"Q=say \"hi\"", "S=a\\b"};
	check_vars(match(r, "10.1.0.1"), v2, 2);
	static const char *const v3[] = {
	    "H=# not a comment", "P=a#b", "U=caf\xc3\xa9", "R=\\n", "T=a\tb"};
	check_vars(match(r, "10.2.0.1"), v3, 5);
	CHECK(!serve_rule_allows(match(r, "10.2.0.1")));
	static const char *const v4[] = {"_x_1=", "TCPREMOTEINFO=x=y#"};
	check_vars(match(r, "10.3.0.1"), v4, 2);
	check_vars(match(r, "10.4.0.1"), NULL, 0);
	serve_rules_free(r);
}

static void
test_rules_variable_limit(void)
{
	struct text t = {0};
	char var[32];
	text_add(&t, "10.0.0.0/8 allow");
	for (int i = 0; i < 64; i++) {
		snprintf(var, sizeof var, " V%d=%d", i, i);
		text_add(&t, var);
	}
	struct serve_rules *r = parse_ok(t.s, t.len);
	REQUIRE(r != NULL);
	const struct serve_rule *rule = match(r, "10.0.0.0");
	REQUIRE(rule != NULL);
	CHECK_EQ(serve_rule_nvars(rule), 64);
	CHECK_STR(serve_rule_var(rule, 0), "V0=0");
	CHECK_STR(serve_rule_var(rule, 63), "V63=63");
	serve_rules_free(r);

	text_add(&t, " V64=64 V65=65");
	char err[256];
	CHECK_EQ(
	    serve_rules_parse("rules.txt", t.s, t.len, &r, err, sizeof err),
	    -EINVAL);
	/* 16 bytes, 10 variables of 5 bytes and 54 of 7, then a space. */
	CHECK_STR(err, "rules.txt:1:446: too many variables (at most 64) "
		       "'V64=64'");
	free(t.s);
}

/* Variables belong to their own rule whatever the order of the lines. */
static void
test_rules_variables_per_rule(void)
{
	struct serve_rules *r = parse_str("10.1.0.0/16 allow A=1 B=2\n"
					  "10.0.0.0/8 allow\n"
					  "10.2.0.0/16 deny C=3\n"
					  "::/0 allow D=4 E=5 F=6\n");
	REQUIRE(r != NULL);
	static const char *const a[] = {"A=1", "B=2"};
	check_vars(match(r, "10.1.1.1"), a, 2);
	check_vars(match(r, "10.9.1.1"), NULL, 0);
	static const char *const c[] = {"C=3"};
	check_vars(match(r, "10.2.1.1"), c, 1);
	static const char *const d[] = {"D=4", "E=5", "F=6"};
	check_vars(match(r, "::1"), d, 3);
	serve_rules_free(r);
}

/* ---------------------------------------------------------------- */
/* Files                                                             */
/* ---------------------------------------------------------------- */

static void
test_rules_load_missing(void)
{
	char err[256];
	struct serve_rules *r = (struct serve_rules *)&sentinel;
	CHECK_EQ(
	    serve_rules_load("/nonexistent/rules.txt", &r, err, sizeof err),
	    -ENOENT);
	CHECK(r == NULL);
	CHECK_STR(err, "/nonexistent/rules.txt: No such file or directory");
	CHECK_EQ(serve_rules_load("/", &r, err, sizeof err), -EISDIR);
	CHECK_STR(err, "/: Is a directory");
}

static void
write_file(int fd, const char *text)
{
	size_t n = strlen(text);
	if (write(fd, text, n) != (ssize_t)n)
		CHECK_FAILED("write: %s", strerror(errno));
}

static void
test_rules_load_file(void)
{
	char path[] = "/tmp/pbx-rules-test-XXXXXX";
	int fd = mkstemp(path);
	REQUIRE(fd >= 0);
	write_file(fd, "# lab\n127.0.0.0/8 allow WHO=local\n::1 allow\n");
	close(fd);
	char err[256] = "";
	struct serve_rules *r = NULL;
	CHECK_EQ(serve_rules_load(path, &r, err, sizeof err), 0);
	CHECK_STR(err, "");
	if (r != NULL) {
		CHECK_EQ(serve_rules_count(r), 2);
		CHECK_EQ(line_of(r, "127.0.0.1"), 2);
		CHECK_EQ(line_of(r, "::1"), 3);
		CHECK_STR(
		    serve_rule_var(match(r, "127.1.2.3"), 0), "WHO=local");
		serve_rules_free(r);
	}
	/* An error in the file names it. */
	fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd >= 0) {
		write_file(fd, "10.0.0.0/8 permit\n");
		close(fd);
	}
	char want[256];
	snprintf(want, sizeof want,
	    "%s:4:12: expected allow or deny, not 'permit'", path);
	CHECK_EQ(serve_rules_load(path, &r, err, sizeof err), -EINVAL);
	CHECK(r == NULL);
	CHECK_STR(err, want);
	/* An empty file is an empty set: every caller denied. */
	fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd >= 0)
		close(fd);
	CHECK_EQ(serve_rules_load(path, &r, err, sizeof err), 0);
	CHECK_EQ(serve_rules_count(r), 0);
	CHECK(match(r, "127.0.0.1") == NULL);
	serve_rules_free(r);
	/* Bigger than 64 MiB (a sparse file): refused before reading. */
	if (truncate(path, 64 * 1024 * 1024 + 1) == 0) {
		snprintf(want, sizeof want,
		    "%s: file too big (more than 64 MiB)", path);
		CHECK_EQ(serve_rules_load(path, &r, err, sizeof err), -EFBIG);
		CHECK(r == NULL);
		CHECK_STR(err, want);
	} else {
		CHECK_FAILED("truncate: %s", strerror(errno));
	}
	/* Unreadable (unless root, who reads anything). */
	if (geteuid() != 0 && chmod(path, 0) == 0) {
		snprintf(want, sizeof want, "%s: Permission denied", path);
		CHECK_EQ(serve_rules_load(path, &r, err, sizeof err), -EACCES);
		CHECK_STR(err, want);
	}
	unlink(path);
}

/* ---------------------------------------------------------------- */
/* Random rules against a linear scan written here                   */
/* ---------------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint32_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 32);
}

struct ref_rule {
	unsigned char net[16];
	unsigned len, line;
	int family;
};

static bool
ref_covers(const struct ref_rule *p, int family, const unsigned char *ip)
{
	if (family != p->family)
		return false;
	for (unsigned i = 0; i < p->len; i++) {
		unsigned bit = 0x80u >> (i % 8);
		if ((ip[i / 8] & bit) != (p->net[i / 8] & bit))
			return false;
	}
	return true;
}

/* A random prefix: few bits set, so that many of them nest. */
static void
ref_random(struct ref_rule *p)
{
	p->family = rnd() % 2 == 0 ? AF_INET : AF_INET6;
	size_t n = p->family == AF_INET ? 4 : 16;
	memset(p->net, 0, sizeof p->net);
	p->net[0] = p->family == AF_INET ? 10 : 0x20;
	for (size_t i = 1; i < n; i++)
		p->net[i] = rnd() % 3 == 0 ? (unsigned char)rnd() : 0;
	p->len = rnd() % (unsigned)(n * 8 + 1);
	for (unsigned i = p->len; i < n * 8; i++)
		p->net[i / 8] &= (unsigned char)~(0x80u >> (i % 8));
}

static unsigned
ref_match(
    const struct ref_rule *rules, size_t n, int family, const unsigned char *ip)
{
	unsigned best = 0, best_len = 0;
	for (size_t i = 0; i < n; i++) {
		bool longer = best == 0 || rules[i].len > best_len;
		if (longer && ref_covers(&rules[i], family, ip)) {
			best = rules[i].line;
			best_len = rules[i].len;
		}
	}
	return best;
}

static size_t
ref_make(struct ref_rule *rules, size_t want, struct text *t)
{
	size_t n = 0;
	while (n < want) {
		struct ref_rule p;
		ref_random(&p);
		bool dup = false;
		for (size_t i = 0; i < n && !dup; i++)
			dup = rules[i].family == p.family &&
			      rules[i].len == p.len &&
			      memcmp(rules[i].net, p.net, 16) == 0;
		if (dup)
			continue;
		char ip[INET6_ADDRSTRLEN], line[96];
		inet_ntop(p.family, p.net, ip, sizeof ip);
		snprintf(line, sizeof line, "%s/%u allow\n", ip, p.len);
		text_add(t, line);
		p.line = (unsigned)++n;
		rules[n - 1] = p;
	}
	return n;
}

static void
test_rules_random_against_linear_scan(void)
{
	enum { NRULES = 1500, NPROBES = 6000 };
	static struct ref_rule rules[NRULES];
	struct text t = {0};
	size_t n = ref_make(rules, NRULES, &t);
	struct serve_rules *r = parse_ok(t.s, t.len);
	free(t.s);
	REQUIRE(r != NULL);
	CHECK_EQ(serve_rules_count(r), n);
	int bad = 0;
	for (int i = 0; i < NPROBES && bad < 5; i++) {
		/* A rule's network with some bits flipped past its length. */
		struct ref_rule p = rules[rnd() % n];
		size_t bits = p.family == AF_INET ? 32 : 128;
		for (int k = 0; k < 3 && i % 4 != 0; k++) {
			unsigned b = rnd() % (unsigned)bits;
			p.net[b / 8] ^= (unsigned char)(0x80u >> (b % 8));
		}
		char ip[INET6_ADDRSTRLEN];
		inet_ntop(p.family, p.net, ip, sizeof ip);
		unsigned want = ref_match(rules, n, p.family, p.net);
		unsigned got = line_of(r, ip);
		if (got != want) {
			CHECK_FAILED(
			    "match(%s): line %u, expected %u", ip, got, want);
			bad++;
		}
	}
	serve_rules_free(r);
}

CHECK_MAIN(TEST(test_rules_bad_inputs), TEST(test_rules_nul_byte),
    TEST(test_rules_error_names_the_file), TEST(test_rules_error_buffer_small),
    TEST(test_rules_empty), TEST(test_rules_comments_only),
    TEST(test_rules_no_trailing_newline), TEST(test_rules_crlf),
    TEST(test_rules_long_line), TEST(test_rules_100000_ipv4),
    TEST(test_rules_100000_ipv6), TEST(test_rules_longest_prefix_v4),
    TEST(test_rules_longest_prefix_any_order),
    TEST(test_rules_longest_prefix_v6), TEST(test_rules_catch_all_per_family),
    TEST(test_rules_match_without_address), TEST(test_rules_variables),
    TEST(test_rules_variable_limit), TEST(test_rules_variables_per_rule),
    TEST(test_rules_load_missing), TEST(test_rules_load_file),
    TEST(test_rules_random_against_linear_scan))
