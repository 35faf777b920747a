/* SPDX-License-Identifier: MIT */
/*
 * rules_fuzz.c: libFuzzer target for the access rules parser: any text
 * either parses into a set whose lookups and variables are sound, or is
 * refused with one printable line.
 */
#include "../src/serve/rules.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct pbx_addr
addr4(const uint8_t b[4])
{
	struct pbx_addr a;
	memset(&a, 0, sizeof a);
	a.u.in4.sin_family = AF_INET;
	memcpy(&a.u.in4.sin_addr, b, 4);
	a.len = sizeof a.u.in4;
	return a;
}

static struct pbx_addr
addr6(const uint8_t b[16])
{
	struct pbx_addr a;
	memset(&a, 0, sizeof a);
	a.u.in6.sin6_family = AF_INET6;
	memcpy(&a.u.in6.sin6_addr, b, 16);
	a.len = sizeof a.u.in6;
	return a;
}

/* Every rule found must be whole: a line, and variables "VAR=...". */
static void
check_rule(const struct serve_rule *rule, size_t size)
{
	if (rule == NULL)
		return;
	if (serve_rule_line(rule) == 0 || serve_rule_line(rule) > size)
		abort();
	(void)serve_rule_allows(rule);
	size_t n = serve_rule_nvars(rule);
	if (n > SERVE_RULES_VARS_MAX || serve_rule_var(rule, n) != NULL)
		abort();
	for (size_t i = 0; i < n; i++) {
		const char *v = serve_rule_var(rule, i);
		const char *eq = strchr(v, '=');
		if (eq == NULL || eq == v || strlen(v) > size)
			abort();
	}
}

/*
 * b as an IPv4 and as an IPv6 address; the IPv4-mapped form of the first
 * must find what the IPv4 one does.
 */
static void
look_up(const struct serve_rules *r, const uint8_t *b, size_t size)
{
	struct pbx_addr a = addr4(b);
	const struct serve_rule *v4 = serve_rules_match(r, &a);
	check_rule(v4, size);
	a = addr6(b);
	check_rule(serve_rules_match(r, &a), size);
	uint8_t m[16] = {[10] = 0xff, [11] = 0xff};
	memcpy(m + 12, b, 4);
	a = addr6(m);
	if (serve_rules_match(r, &a) != v4)
		abort();
}

static void
look_up_some(const struct serve_rules *r, const uint8_t *data, size_t size)
{
	static const uint8_t fixed[][16] = {{0}, {10, 1, 2, 3}, {127, 0, 0, 1},
	    {192, 168, 0, 1},
	    {255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
		255, 255, 255},
	    {0x20, 0x01, 0x0d, 0xb8, [15] = 1}, {0xfe, 0x80, [15] = 1},
	    {[15] = 1}};
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		look_up(r, fixed[i], size);
	/* Raw bytes of the input, read as addresses. */
	uint8_t b[16];
	for (size_t at = 0; at < size && at < 256; at += 13) {
		size_t n = size - at < 16 ? size - at : 16;
		memset(b, 0, sizeof b);
		memcpy(b, data + at, n);
		look_up(r, b, size);
	}
	/* Each address the text spells out as IPv4 or IPv6. */
	char tok[64];
	for (size_t at = 0; at < size && at < 4096;) {
		size_t n = 0;
		while (at + n < size && n < sizeof tok - 1 &&
		       data[at + n] > ' ' && data[at + n] != '/')
			n++;
		memcpy(tok, data + at, n);
		tok[n] = '\0';
		memset(b, 0, sizeof b);
		if (inet_pton(AF_INET, tok, b) == 1 ||
		    inet_pton(AF_INET6, tok, b) == 1)
			look_up(r, b, size);
		at += n + 1;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	struct serve_rules *r = NULL;
	int rc = serve_rules_parse(
	    "fuzz", (const char *)data, size, &r, err, sizeof err);
	if (rc < 0) {
		/* Refused: one line, printable, naming the input. */
		if (r != NULL || strncmp(err, "fuzz:", 5) != 0)
			abort();
		for (const char *c = err; *c != '\0'; c++)
			if ((unsigned char)*c < 0x20 ||
			    (unsigned char)*c > 0x7e)
				abort();
		return 0;
	}
	if (r == NULL || serve_rules_count(r) > size)
		abort();
	look_up_some(r, data, size);
	serve_rules_free(r);
	return 0;
}
