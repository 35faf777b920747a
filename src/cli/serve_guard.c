/* SPDX-License-Identifier: MIT */
/* serve_guard.c: `pbx serve` deadlines, keepalive, rules and limits. */
#include "serve_guard.h"

#include "../log/log.h"
#include "../serve/proxy_header.h"
#include "../serve/rules.h"
#include "args.h"
#include "cli.h"

#include <stdlib.h>
#include <string.h>

void
serve_guard_defaults(struct serve_opts *o)
{
	/* A silent caller goes in a minute, a vanished one in two, a
	 * program that will not stop 5 s after it was asked to. */
	o->idle_ms = 60000;
	o->kill_grace_ms = 5000;
	o->keepalive_idle_s = 60;
	o->keepalive_interval_s = 10;
	o->keepalive_count = 6;
	o->prefix4 = 32;
	o->prefix6 = 128;
	o->proxy_timeout_ms = 5000;
}

/* CIDR[,CIDR...]: the senders whose PROXY header is believed. */
static int
proxy_from(struct serve_opts *o, const char *arg)
{
	size_t len = strlen(arg);
	char err[512];
	struct serve_rules *r;

	if (o->proxy_from != NULL) {
		log_error("--proxy-from given twice ('%s')", arg);
		return EXIT_USAGE;
	}
	char *text = malloc(len * 8 + 16);
	if (text == NULL)
		return EXIT_USAGE;
	/* One "CIDR allow" rule per item: the rules' strict parser. */
	size_t k = 0;
	for (const char *p = arg;; p++) {
		if (*p == ',' || *p == '\0') {
			memcpy(text + k, " allow\n", 7);
			k += 7;
			if (*p == '\0')
				break;
		} else {
			text[k++] = *p == ' ' || *p == '\n' ? '?' : *p;
		}
	}
	int rc = serve_rules_parse("proxy-from", text, k, &r, err, sizeof err);
	free(text);
	if (rc < 0) {
		/* "proxy-from:LINE:COL: why": the why is what tells. */
		const char *why = strstr(err, ": ");
		return cli_bad_value("proxy-from", arg, why ? why + 2 : err);
	}
	o->proxy_from = r;
	return 0;
}

static int
proxy_protocol(struct serve_opts *o, const char *arg)
{
	if (arg == NULL)
		o->proxy_versions = PROXY_V1 | PROXY_V2;
	else if (strcmp(arg, "v1") == 0)
		o->proxy_versions = PROXY_V1;
	else if (strcmp(arg, "v2") == 0)
		o->proxy_versions = PROXY_V2;
	else
		return cli_bad_value("proxy-protocol", arg,
		    "expected v1 or v2 (or nothing: both)");
	return 0;
}

/* The longest deadline: a week, well inside the clocks' 49 days. */
#define DEADLINE_MAX_S 604800

/* SECONDS, or 0 for "off". */
static int
deadline(const char *name, const char *arg, uint32_t *ms)
{
	int v;

	if (strcmp(arg, "0") == 0) {
		*ms = 0;
		return 0;
	}
	if (!args_seconds(arg, DEADLINE_MAX_S, &v))
		return cli_bad_value(name, arg,
		    "expected seconds from 0 (off) to 604800, like 30 or 0.5");
	*ms = (uint32_t)v;
	return 0;
}

/* IDLE,INTERVAL,COUNT (within the kernel's bounds), or off. */
static int
keepalive(struct serve_opts *o, const char *arg)
{
	static const char expected[] =
	    "expected IDLE,INTERVAL,COUNT (seconds 1-32767, seconds 1-32767, 1-127) or off";
	char buf[64];
	unsigned long v[3];

	if (strcmp(arg, "off") == 0) {
		o->keepalive_idle_s = 0;
		return 0;
	}
	if (strlen(arg) >= sizeof buf)
		return cli_bad_value("keepalive", arg, expected);
	memcpy(buf, arg, strlen(arg) + 1);
	char *rest = buf;
	for (int i = 0; i < 3; i++) {
		char *word = rest;
		char *comma = strchr(rest, ',');
		if ((comma == NULL) != (i == 2))
			return cli_bad_value("keepalive", arg, expected);
		if (comma != NULL) {
			*comma = '\0';
			rest = comma + 1;
		}
		if (!args_number(word, 1, i == 2 ? 127 : 32767, &v[i]))
			return cli_bad_value("keepalive", arg, expected);
	}
	o->keepalive_idle_s = (int)v[0];
	o->keepalive_interval_s = (int)v[1];
	o->keepalive_count = (int)v[2];
	return 0;
}

/* The deadline options. */
static int
parse_deadline(struct serve_opts *o, int c, const char *arg)
{
	uint32_t ms;
	int r;

	switch (c) {
	case OPT_IDLE_TIMEOUT:
		return deadline("idle-timeout", arg, &o->idle_ms);
	case OPT_TIMEOUT:
		return deadline("timeout", arg, &o->total_ms);
	case OPT_KILL_GRACE:
		return deadline("kill-grace", arg, &o->kill_grace_ms);
	case OPT_KEEPALIVE:
		return keepalive(o, arg);
	case OPT_USER_TIMEOUT:
		r = deadline("user-timeout", arg, &ms);
		o->user_timeout_ms = ms;
		return r;
	default:
		return EXIT_USAGE;
	}
}

/* V4,V6: the prefix lengths calls are counted per. */
static int
per_ip_prefix(struct serve_opts *o, const char *arg)
{
	static const char expected[] =
	    "expected V4,V6: IPv4 and IPv6 prefix lengths (0-32,0-128), like 24,64";
	const char *comma = strchr(arg, ',');
	char v4[8];
	unsigned long a, b;

	if (comma == NULL || (size_t)(comma - arg) >= sizeof v4)
		return cli_bad_value("per-ip-prefix", arg, expected);
	memcpy(v4, arg, (size_t)(comma - arg));
	v4[comma - arg] = '\0';
	if (!args_number(v4, 0, 32, &a) || !args_number(comma + 1, 0, 128, &b))
		return cli_bad_value("per-ip-prefix", arg, expected);
	o->prefix4 = (unsigned)a;
	o->prefix6 = (unsigned)b;
	return 0;
}

/* Read before the start: a file that does not parse refuses it. */
static int
load_rules(struct serve_opts *o)
{
	struct serve_rules *r;
	char err[512];

	if (serve_rules_load(o->rules_path, &r, err, sizeof err) < 0) {
		log_error("%s", err);
		return EXIT_USAGE;
	}
	o->rules = r;
	return 0;
}

int
serve_guard_option(struct serve_opts *o, int c, const char *arg)
{
	unsigned long n;

	switch (c) {
	case OPT_RULES:
		o->rules_path = arg;
		return 0;
	case OPT_MAX_PER_IP:
		if (!args_number(arg, 0, 1000000, &n))
			return cli_bad_value("max-per-ip", arg,
			    "expected a number from 0 (no limit) to 1000000");
		o->max_per_ip = (unsigned)n;
		return 0;
	case OPT_PER_IP_PREFIX:
		return per_ip_prefix(o, arg);
	case OPT_PROXY_PROTOCOL:
		return proxy_protocol(o, arg);
	case OPT_PROXY_FROM:
		return proxy_from(o, arg);
	case OPT_PROXY_REQUIRED:
		o->proxy_required = true;
		return 0;
	case OPT_PROXY_TIMEOUT:
		if (strcmp(arg, "0") == 0)
			return cli_bad_value("proxy-timeout", arg,
			    "expected seconds, more than 0: a header must come in time");
		return deadline("proxy-timeout", arg, &o->proxy_timeout_ms);
	case OPT_REJECT_MESSAGE:
		if (strlen(arg) > 1024 || strchr(arg, '\n') != NULL)
			return cli_bad_value("reject-message", arg,
			    "expected one line of at most 1024 bytes");
		o->reject_message = arg;
		return 0;
	default:
		return parse_deadline(o, c, arg);
	}
}

int
serve_guard_check(struct serve_opts *o)
{
	if (o->max_per_ip > o->max_conns) {
		log_error("--max-per-ip %u is more than --max-conns %u",
		    o->max_per_ip, o->max_conns);
		return EXIT_USAGE;
	}
	if ((o->proxy_versions != 0) != (o->proxy_from != NULL)) {
		log_error(
		    o->proxy_versions != 0
			? "--proxy-protocol needs --proxy-from CIDR[,CIDR...]: the senders whose header is believed"
			: "--proxy-from needs --proxy-protocol");
		return EXIT_USAGE;
	}
	if (o->proxy_required && o->proxy_versions == 0) {
		log_error("--proxy-required needs --proxy-protocol");
		return EXIT_USAGE;
	}
	if (o->reject_message != NULL && o->max_per_ip == 0) {
		log_error("--reject-message needs --max-per-ip");
		return EXIT_USAGE;
	}
	return o->rules_path != NULL ? load_rules(o) : 0;
}

void
serve_guard_fini(struct serve_opts *o)
{
	serve_rules_free((struct serve_rules *)(uintptr_t)o->rules);
	serve_rules_free((struct serve_rules *)(uintptr_t)o->proxy_from);
	o->rules = NULL;
	o->proxy_from = NULL;
}
